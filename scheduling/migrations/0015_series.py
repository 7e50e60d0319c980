# Standing weekly bookings (issue 14 item 2): the Series and each occurrence's link to it;
# a series' later occurrences carry no response deadline of their own.
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0014_desk_dispatch")]

    operations = [
        migrations.AlterField(
            model_name="appointment",
            name="response_deadline",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="Series",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("every_weeks", models.PositiveSmallIntegerField()),
                ("count", models.PositiveSmallIntegerField(blank=True, null=True)),
                ("until", models.DateField(blank=True, null=True)),
                ("first_start", models.DateTimeField()),
                ("wall_time", models.TimeField()),
                ("created_at", models.DateTimeField(auto_now_add=True)),
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
            options={"verbose_name_plural": "series"},
        ),
        migrations.AddField(
            model_name="appointment",
            name="series",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="appointments",
                to="scheduling.series",
            ),
        ),
        migrations.AddConstraint(
            model_name="series",
            constraint=models.CheckConstraint(
                condition=models.Q(("every_weeks__in", (1, 2, 4))),
                name="series_every_1_2_or_4_weeks",
            ),
        ),
        migrations.AddConstraint(
            model_name="series",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("count__isnull", False), ("until__isnull", True)),
                    models.Q(("count__isnull", True), ("until__isnull", False)),
                    _connector="OR",
                ),
                name="series_count_or_until",
            ),
        ),
    ]
