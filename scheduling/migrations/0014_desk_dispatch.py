# Manual dispatch and acting for staff (issue 13 items 3 and 4).
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0013_payment_gateways")]

    operations = [
        # Who took a dispatch decision by hand, and why (empty: the dispatcher).
        migrations.AddField(
            model_name="dispatchdecision",
            name="decided_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddField(
            model_name="dispatchdecision",
            name="reason",
            field=models.TextField(blank=True),
        ),
        migrations.AlterField(
            model_name="dispatchdecision",
            name="outcome",
            field=models.CharField(
                choices=[
                    ("assigned", "Assigned"),
                    ("no_driver", "No Driver"),
                    ("unassigned", "Unassigned"),
                ],
                max_length=16,
            ),
        ),
        # The desk acting for a therapist or driver: on whose behalf.
        migrations.AddField(
            model_name="transition",
            name="on_behalf_of",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        # The driver's place in the queue when given the trip, given back on unassign.
        migrations.AddField(
            model_name="trip",
            name="driver_waiting_since",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
