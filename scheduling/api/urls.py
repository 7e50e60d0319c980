from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from scheduling.api import gateway_payments, payments, views, visits

router = SimpleRouter()
router.register("clients", views.ClientViewSet, basename="client")
router.register("services", views.ServiceViewSet, basename="service")
router.register("staff", views.StaffViewSet, basename="staff")
router.register("appointments", views.AppointmentViewSet, basename="appointment")
router.register("trips", views.TripViewSet, basename="trip")
# Issue 14 item 1: couples and group visits (scheduling/api/visits.py).
router.register("visits", visits.VisitViewSet, basename="visit")

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
    # Issue 15 items 3-6: gateway links, refunds, and the gateways' webhooks (no login).
    path(
        "appointments/<int:pk>/payment-link/",
        gateway_payments.PaymentLinkView.as_view(),
        name="appointment-payment-link",
    ),
    path("payments/<int:pk>/refund/", gateway_payments.RefundView.as_view(), name="payment-refund"),
    path(
        "payments/webhooks/razorpay/",
        gateway_payments.RazorpayWebhookView.as_view(),
        name="webhook-razorpay",
    ),
    path(
        "payments/webhooks/paymongo/",
        gateway_payments.PayMongoWebhookView.as_view(),
        name="webhook-paymongo",
    ),
    path(
        "payments/webhooks/fake/", gateway_payments.FakeWebhookView.as_view(), name="webhook-fake"
    ),
    path("schema/", SpectacularAPIView.as_view(permission_classes=[]), name="schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api:schema", permission_classes=[]),
        name="docs",
    ),
    *router.urls,
]
