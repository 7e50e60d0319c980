# Payment gateways: links, webhook events, refunds (issue 15, items 3-6).
from decimal import Decimal

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import scheduling.models.payments


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0012_operations"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Refund",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("amount", models.DecimalField(decimal_places=2, max_digits=10)),
                (
                    "currency",
                    models.CharField(
                        default=scheduling.models.payments.default_currency, max_length=3
                    ),
                ),
                (
                    "method",
                    models.CharField(
                        choices=[("gateway", "Gateway"), ("cash", "Cash")], max_length=16
                    ),
                ),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("pending", "Pending"),
                            ("processed", "Processed"),
                            ("failed", "Failed"),
                        ],
                        default="pending",
                        max_length=16,
                    ),
                ),
                ("gateway", models.CharField(blank=True, max_length=16)),
                ("gateway_refund_id", models.CharField(blank=True, max_length=64)),
                ("reason", models.CharField(blank=True, max_length=300)),
                ("error", models.CharField(blank=True, max_length=300)),
                ("created_at", models.DateTimeField()),
                ("processed_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "ordering": ["created_at", "id"],
            },
        ),
        migrations.CreateModel(
            name="WebhookEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("gateway", models.CharField(max_length=16)),
                ("event_id", models.CharField(max_length=100)),
                ("event_type", models.CharField(blank=True, max_length=64)),
                ("raw_body", models.TextField()),
                ("headers", models.JSONField(default=dict)),
                ("received_at", models.DateTimeField()),
                (
                    "outcome",
                    models.CharField(
                        choices=[
                            ("applied", "Applied"),
                            ("ignored", "Ignored"),
                            ("flagged", "Flagged"),
                        ],
                        max_length=16,
                    ),
                ),
                ("flagged_reason", models.CharField(blank=True, max_length=300)),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "ordering": ["received_at", "id"],
            },
        ),
        migrations.AddField(
            model_name="payment",
            name="flagged_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="payment",
            name="flagged_reason",
            field=models.CharField(blank=True, max_length=300),
        ),
        migrations.AddField(
            model_name="payment",
            name="link_expires_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="payment",
            name="link_url",
            field=models.URLField(blank=True, max_length=500),
        ),
        migrations.AddField(
            model_name="payment",
            name="refunded_amount",
            field=models.DecimalField(decimal_places=2, default=Decimal("0"), max_digits=10),
        ),
        migrations.AddConstraint(
            model_name="payment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("refunded_amount__gte", 0), ("refunded_amount__lte", models.F("amount"))
                ),
                name="payment_refund_within_amount",
            ),
        ),
        migrations.AddField(
            model_name="refund",
            name="payment",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="refunds",
                to="scheduling.payment",
            ),
        ),
        migrations.AddField(
            model_name="refund",
            name="requested_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="webhookevent",
            name="payment",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="webhook_events",
                to="scheduling.payment",
            ),
        ),
        migrations.AddConstraint(
            model_name="refund",
            constraint=models.CheckConstraint(
                condition=models.Q(("amount__gt", 0)), name="refund_amount_positive"
            ),
        ),
        migrations.AddConstraint(
            model_name="refund",
            constraint=models.UniqueConstraint(
                condition=models.Q(("gateway_refund_id", ""), _negated=True),
                fields=("gateway", "gateway_refund_id"),
                name="refund_gateway_once",
            ),
        ),
        migrations.AddIndex(
            model_name="webhookevent",
            index=models.Index(
                condition=models.Q(("outcome", "flagged"), ("resolved_at__isnull", True)),
                fields=["received_at"],
                name="webhook_flagged_idx",
            ),
        ),
        migrations.AddConstraint(
            model_name="webhookevent",
            constraint=models.UniqueConstraint(
                fields=("gateway", "event_id"), name="webhook_event_once"
            ),
        ),
    ]
