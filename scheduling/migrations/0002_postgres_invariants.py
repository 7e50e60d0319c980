"""Invariants and search indexes PostgreSQL enforces (no-ops on SQLite)."""

from django.db import migrations

from scheduling.migration_ops import PostgresOnlySQL

ACTIVE_APPOINTMENT = "('pending', 'confirmed', 'in_progress')"
BUSY_TRIP = "('assigned', 'en_route', 'arrived')"


class Migration(migrations.Migration):
    dependencies = [("scheduling", "0001_initial")]

    operations = [
        PostgresOnlySQL(
            "CREATE EXTENSION IF NOT EXISTS btree_gist; CREATE EXTENSION IF NOT EXISTS pg_trgm;",
            reverse_sql=migrations.RunSQL.noop,
        ),
        # A therapist is never in two active appointments at once, buffer included.
        PostgresOnlySQL(
            f"""ALTER TABLE scheduling_appointment ADD CONSTRAINT appt_therapist_no_overlap
                EXCLUDE USING gist (therapist_id WITH =,
                                    tstzrange(start, blocked_until, '[)') WITH &&)
                WHERE (status IN {ACTIVE_APPOINTMENT})""",
            reverse_sql="ALTER TABLE scheduling_appointment DROP CONSTRAINT appt_therapist_no_overlap",
        ),
        # A driver never holds two overlapping trips.
        PostgresOnlySQL(
            f"""ALTER TABLE scheduling_trip ADD CONSTRAINT trip_driver_no_overlap
                EXCLUDE USING gist (driver_id WITH =,
                                    tstzrange(window_start, window_end, '[)') WITH &&)
                WHERE (driver_id IS NOT NULL AND status IN {BUSY_TRIP})""",
            reverse_sql="ALTER TABLE scheduling_trip DROP CONSTRAINT trip_driver_no_overlap",
        ),
        # Client search: Django's icontains is UPPER(col::text) LIKE UPPER(pattern).
        PostgresOnlySQL(
            """CREATE INDEX client_name_trgm_idx ON scheduling_client
                   USING gin (UPPER(name::text) gin_trgm_ops);
               CREATE INDEX client_phone_trgm_idx ON scheduling_client
                   USING gin (phone_digits gin_trgm_ops);""",
            reverse_sql="DROP INDEX client_name_trgm_idx; DROP INDEX client_phone_trgm_idx;",
        ),
    ]
