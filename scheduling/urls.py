"""Pages: sign-in, and one area per role."""

from django.contrib.auth import views as auth_views
from django.urls import include, path

from scheduling.views import accounts, fake_pay

urlpatterns = [
    path("", accounts.home, name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "accounts/password/",
        auth_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    # Password reset by email (Django's views; templates in templates/registration/).
    path(
        "accounts/password/reset/",
        auth_views.PasswordResetView.as_view(),
        name="password_reset",
    ),
    path(
        "accounts/password/reset/sent/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/password/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("desk/", include(("scheduling.views.desk.urls", "desk"))),
    path("therapist/", include(("scheduling.views.therapist", "therapist"))),
    path("driver/", include(("scheduling.views.driver", "driver"))),
    path("reports/", include(("scheduling.views.reports", "reports"))),
    # The fake payment gateway's hosted page (PAYMENT_GATEWAY=fake; docs/payments.md).
    path("pay/fake/<str:token>/", fake_pay.pay, name="fake-pay"),
]
