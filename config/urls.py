from django.urls import path

from scheduling.admin import site as admin_site

urlpatterns = [
    path("admin/", admin_site.urls),
]
