"""The receptionist's desk (receptionists and managers), one module per screen.

The day board (board.py, its geometry in timeline.py), booking and rescheduling
(booking.py, with the times panel in times.py), an appointment's page and actions
(appointment.py), the queues that need a person (queues.py), the drivers (drivers.py),
clients from the booking form (clients.py); what they share is present.py, the URLs
urls.py. Every write goes through a service; every part the stream can change is a live
region (static/js/app.js) whose fragment is rendered by the same template as the first
page, so a live refresh and a reload agree.
"""
