# Couples and group visits (issue 14 item 1): the Visit, each session's link to it and the
# shared trips' link to it.
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0015_series")]

    operations = [
        migrations.CreateModel(
            name="Visit",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("start", models.DateTimeField()),
                ("address", models.TextField(blank=True)),
                ("notes", models.TextField(blank=True)),
                ("needs_transport", models.BooleanField(default=False)),
                ("travel_minutes", models.PositiveSmallIntegerField(default=0)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "area",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="visits",
                        to="scheduling.servicearea",
                    ),
                ),
                (
                    "client",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="visits",
                        to="scheduling.client",
                    ),
                ),
                (
                    "created_by",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={"ordering": ["start", "id"]},
        ),
        migrations.AddField(
            model_name="appointment",
            name="visit",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="sessions",
                to="scheduling.visit",
            ),
        ),
        migrations.AddField(
            model_name="trip",
            name="visit",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="trips",
                to="scheduling.visit",
            ),
        ),
        migrations.AddIndex(
            model_name="visit",
            index=models.Index(fields=["client", "start"], name="visit_client_idx"),
        ),
    ]
