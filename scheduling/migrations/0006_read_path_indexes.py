"""Indexes of the API's read paths.

- The availability page's busy appointments: active ones by therapist and end of the
  blocked time (see Appointment.Meta).
- The address book's search page: a (name, id) index to walk names in order, and finer
  statistics on the name trigram index's expression (PostgreSQL only, as in 0002).

With the default statistics the planner's estimate of how many names contain a fragment
swings from one ANALYZE to the next, and with it the choice between walking the names in
order (right for a common surname) and fetching every trigram match to sort them (right
for a rare name): a wrong choice cost 5-8 ms on the bench's 100,000 clients. A histogram
of 1,000 entries keeps the estimates, and so the plans, steady, for about 0.15 ms more
planning a search.
"""

from django.db import migrations, models

from scheduling.migration_ops import PostgresOnlySQL


class Migration(migrations.Migration):
    dependencies = [
        ("scheduling", "0005_dispatch_queue_length"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="appointment",
            index=models.Index(
                condition=models.Q(("status__in", ("pending", "confirmed", "in_progress"))),
                fields=["therapist", "blocked_until"],
                name="appt_therapist_busy_idx",
            ),
        ),
        migrations.AddIndex(
            model_name="client",
            index=models.Index(fields=["name", "id"], name="client_name_idx"),
        ),
        PostgresOnlySQL(
            """ALTER INDEX client_name_trgm_idx ALTER COLUMN 1 SET STATISTICS 1000;
               ANALYZE scheduling_client;""",
            reverse_sql="ALTER INDEX client_name_trgm_idx ALTER COLUMN 1 SET STATISTICS -1;",
        ),
    ]
