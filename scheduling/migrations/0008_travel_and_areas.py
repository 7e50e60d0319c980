"""Travel time in the booking engine: service areas, the travel an appointment was booked
with, and the therapist's busy range (leaving base to being back) guarded by the
exclusion constraint instead of [start, blocked_until).

Existing appointments were booked without travel: they get travel 0 and the busy range
[start, blocked_until), exactly what the old constraint held, so the new constraint is
satisfied by any data the old one allowed and the migration cannot fail on it."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import F, Q

from scheduling.migration_ops import PostgresOnlySQL

ACTIVE_APPOINTMENT = "('pending', 'confirmed', 'in_progress')"


def busy_range_of_existing(apps, schema_editor):
    Appointment = apps.get_model("scheduling", "Appointment")
    Appointment.objects.update(busy_from=F("start"), busy_until=F("blocked_until"))


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0007_choice_labels")]

    operations = [
        migrations.CreateModel(
            name="ServiceArea",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=120, unique=True)),
                ("travel_minutes", models.PositiveSmallIntegerField(help_text="Minutes from base to a client here, one way.")),
                ("active", models.BooleanField(default=True)),
            ],
            options={
                "ordering": ["name"],
                "constraints": [
                    models.CheckConstraint(condition=Q(travel_minutes__gte=1, travel_minutes__lte=360), name="area_travel_bounded")
                ],
            },
        ),
        migrations.AddField(
            model_name="client",
            name="area",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="clients", to="scheduling.servicearea"),
        ),
        migrations.AddField(
            model_name="appointment",
            name="area",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="appointments", to="scheduling.servicearea"),
        ),
        migrations.AddField(
            model_name="appointment",
            name="travel_minutes",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(model_name="appointment", name="busy_from", field=models.DateTimeField(null=True)),
        migrations.AddField(model_name="appointment", name="busy_until", field=models.DateTimeField(null=True)),
        migrations.RunPython(busy_range_of_existing, migrations.RunPython.noop),
        migrations.AlterField(model_name="appointment", name="busy_from", field=models.DateTimeField()),
        migrations.AlterField(model_name="appointment", name="busy_until", field=models.DateTimeField()),
        migrations.AddConstraint(
            model_name="appointment",
            constraint=models.CheckConstraint(
                condition=Q(busy_from__lte=F("start"), busy_until__gte=F("blocked_until")),
                name="appt_busy_covers_visit",
            ),
        ),
        migrations.RemoveIndex(model_name="appointment", name="appt_therapist_busy_idx"),
        migrations.AddIndex(
            model_name="appointment",
            index=models.Index(
                condition=Q(status__in=["pending", "confirmed", "in_progress"]),
                fields=["therapist", "busy_until"],
                name="appt_therapist_busy_idx",
            ),
        ),
        # A therapist is never in two active appointments' busy ranges at once: travel
        # there, the session, the clean-up and travel back.
        PostgresOnlySQL(
            f"""ALTER TABLE scheduling_appointment DROP CONSTRAINT appt_therapist_no_overlap;
                ALTER TABLE scheduling_appointment ADD CONSTRAINT appt_therapist_no_overlap
                EXCLUDE USING gist (therapist_id WITH =,
                                    tstzrange(busy_from, busy_until, '[)') WITH &&)
                WHERE (status IN {ACTIVE_APPOINTMENT})""",
            reverse_sql=f"""ALTER TABLE scheduling_appointment DROP CONSTRAINT appt_therapist_no_overlap;
                ALTER TABLE scheduling_appointment ADD CONSTRAINT appt_therapist_no_overlap
                EXCLUDE USING gist (therapist_id WITH =,
                                    tstzrange(start, blocked_until, '[)') WITH &&)
                WHERE (status IN {ACTIVE_APPOINTMENT})""",
        ),
    ]
