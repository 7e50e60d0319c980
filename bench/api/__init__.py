"""`make bench-api`: the REST API under gunicorn on PostgreSQL, beside a same-run ceiling."""
