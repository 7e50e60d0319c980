from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from scheduling.api import payments, views

router = SimpleRouter()
router.register("clients", views.ClientViewSet, basename="client")
router.register("services", views.ServiceViewSet, basename="service")
router.register("staff", views.StaffViewSet, basename="staff")
router.register("appointments", views.AppointmentViewSet, basename="appointment")
router.register("trips", views.TripViewSet, basename="trip")

urlpatterns = [
    path("auth/token/", views.TokenView.as_view(), name="token"),
    path("availability/", views.AvailabilityView.as_view(), name="availability"),
    path("drivers/me/shift/", views.ShiftView.as_view(), name="driver-shift"),
    path("events/", views.EventsView.as_view(), name="events"),
    path(
        "appointments/<int:pk>/payments/",
        payments.AppointmentPaymentsView.as_view(),
        name="appointment-payments",
    ),
    path("payments/", payments.PaymentListView.as_view(), name="payment-list"),
    path("payments/<int:pk>/verify/", payments.PaymentVerifyView.as_view(), name="payment-verify"),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[]), name="schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api:schema", permission_classes=[]),
        name="docs",
    ),
    *router.urls,
]
