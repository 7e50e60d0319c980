from django.conf import settings
from django.http import HttpRequest


def business(request: HttpRequest) -> dict:
    return {"business_name": settings.BUSINESS_NAME}
