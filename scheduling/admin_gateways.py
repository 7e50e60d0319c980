"""The admin's read-only pages of what the payment gateways told us (issue 15): raw
webhooks with their outcome, and refunds. Money changes only through
services/gateway_payments.py; registered when scheduling/admin.py imports this module."""

from __future__ import annotations

from django.contrib import admin

from scheduling.admin_site import ReadOnlyModelAdmin, site
from scheduling.models import Refund, WebhookEvent


@admin.register(WebhookEvent, site=site)
class WebhookEventAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "received_at", "gateway", "event_type", "outcome", "payment")
    list_filter = ("outcome", "gateway", "event_type")
    list_select_related = ("payment",)
    search_fields = ("=id", "=event_id", "=payment__id", "flagged_reason")
    date_hierarchy = "received_at"


@admin.register(Refund, site=site)
class RefundAdmin(ReadOnlyModelAdmin):
    list_display = ("id", "created_at", "payment", "method", "amount", "currency", "status")
    list_filter = ("status", "method", "gateway")
    list_select_related = ("payment",)
    search_fields = ("=id", "=payment__id", "=gateway_refund_id")
    date_hierarchy = "created_at"
