"""The desk's URLs (namespace `desk`, under /desk/)."""

from django.urls import path

from scheduling.views.desk import (
    appointment,
    board,
    booking,
    choice,
    client_page,
    clients,
    control,
    dispatch,
    drivers,
    payment_link,
    payments,
    queues,
    series,
    visits,
)

urlpatterns = [
    path("", board.board, name="board"),
    path("board/", board.board_fragment, name="board_fragment"),
    path("queues/", queues.queues, name="queues"),
    path("queues/fragment/", queues.queues_fragment, name="queues_fragment"),
    path("queues/summary/", queues.attention_fragment, name="attention_fragment"),
    path("drivers/", drivers.drivers, name="drivers"),
    path("drivers/fragment/", drivers.drivers_fragment, name="drivers_fragment"),
    path("drivers/summary/", drivers.drivers_summary_fragment, name="drivers_summary_fragment"),
    path("notifications/<int:pk>/retry/", queues.retry_notification, name="retry_notification"),
    path("appointments/new/", booking.new_appointment, name="new"),
    path("appointments/new/times/", booking.booking_times, name="booking_times"),
    path("appointments/new/repeat/", series.repeat_preview, name="repeat_fragment"),
    path("clients/search/", clients.client_search, name="client_search"),
    path("clients/new/", clients.new_client, name="new_client"),
    path("clients/<int:pk>/", client_page.client_page, name="client"),
    path("appointments/<int:pk>/", appointment.appointment_detail, name="appointment"),
    path(
        "appointments/<int:pk>/fragment/",
        appointment.appointment_fragment,
        name="appointment_fragment",
    ),
    path(
        "appointments/<int:pk>/actions/",
        appointment.appointment_actions,
        name="appointment_actions",
    ),
    path(
        "appointments/<int:pk>/payments/",
        payments.payments_fragment,
        name="appointment_payments",
    ),
    path("payments/<int:pk>/verify/", payments.verify, name="verify_payment"),
    path("payments/<int:pk>/resolve/", payments.resolve, name="resolve_payment_flag"),
    path("appointments/<int:pk>/payment-link/", payment_link.send_link, name="send_payment_link"),
    path("appointments/<int:pk>/times/", booking.reschedule_times, name="reschedule_times"),
    path("appointments/<int:pk>/reschedule/", booking.reschedule, name="reschedule"),
    path("appointments/<int:pk>/cancel/", appointment.act, {"action": "cancel"}, name="cancel"),
    path("appointments/<int:pk>/no-show/", appointment.act, {"action": "no_show"}, name="no_show"),
    path("appointments/<int:pk>/rebook-any/", choice.rebook_any, name="rebook_any"),
    path("visits/<int:pk>/cancel/", visits.cancel_whole_visit, name="cancel_visit"),
    path("appointments/<int:pk>/reassign/", control.reassign_view, name="reassign"),
    # Issue 13: manual dispatch, and acting for a therapist or driver confirmed by phone.
    path("trips/<int:pk>/assign/", dispatch.trip_assign, name="trip_assign"),
    path("trips/<int:pk>/unassign/", dispatch.trip_unassign, name="trip_unassign"),
    path("trips/<int:pk>/for/<slug:action>/", dispatch.act_for_driver, name="trip_act_for"),
    path("appointments/<int:pk>/for/<slug:action>/", dispatch.act_for_therapist, name="act_for"),
    path(
        "appointments/<int:pk>/reassign/choices/",
        control.reassign_choices,
        name="reassign_choices",
    ),
]
