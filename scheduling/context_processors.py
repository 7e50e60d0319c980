from django.conf import settings
from django.http import HttpRequest

from scheduling.models import Leg
from scheduling.states import AppointmentStatus, TripStatus


def business(request: HttpRequest) -> dict:
    return {
        "business_name": settings.BUSINESS_NAME,
        "business_time_zone": settings.TIME_ZONE,
        # What live announcements call statuses and legs: the choices' own words.
        "live_words": {
            value: label
            for choices in (AppointmentStatus, TripStatus, Leg)
            for value, label in choices.choices
        },
    }
