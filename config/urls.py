from django.urls import include, path

from scheduling.admin import site as admin_site
from scheduling.api.health import HealthView
from scheduling.observability.views import metrics

urlpatterns = [
    path("admin/", admin_site.urls),
    path("api/", include(("scheduling.api.urls", "api"))),
    path("health/", HealthView.as_view(), name="health"),
    path("metrics", metrics, name="metrics"),
    path("", include("scheduling.urls")),
]

handler400 = "scheduling.api.fallbacks.bad_request"
handler404 = "scheduling.api.fallbacks.not_found"
handler500 = "scheduling.api.fallbacks.server_error"
