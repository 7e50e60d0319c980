"""The product's URLconf plus two ceiling views, served by the same gunicorn workers.

- `/bench/bare/`: a plain Django view through the full middleware stack, no DRF, no
  database: the most a request can cost less than.
- `/bench/insert/`: one raw INSERT of an active appointment row into
  `scheduling_appointment` (same indexes, exclusion constraint and foreign keys as a real
  booking), autocommit: the floor of any booking's database work, commit included.

- `/bench/raw-booking/`: every row a product booking writes, with its locks, in
  hand-written SQL (bench/api/raw_booking.py): the ceiling of create.
- `/bench/raw-booking-transport/`: the same with transport (two trips, their log rows, the
  drivers' capacity locks): the ceiling of create with transport.

All are only ever routed under `bench.api.settings`; the product's URLconf is untouched.
"""

from __future__ import annotations

import os

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from bench.api.raw_booking import raw_booking, raw_booking_transport
from config.urls import handler400, handler404, handler500  # noqa: F401
from config.urls import urlpatterns as product_urlpatterns

# Rows go far past any real booking (2099), one per therapist every 75 minutes, so they
# never overlap each other or anything the product booked; the bench deletes them (by
# their creator) before its next run. Travel 0: the busy range the exclusion constraint
# checks is [start, start + 75 min), the row's whole span.
INSERT_SQL = """
WITH n AS (SELECT nextval('bench_insert_seq') AS n)
INSERT INTO scheduling_appointment
    (client_id, service_id, therapist_id, start, "end", blocked_until, travel_minutes,
     busy_from, busy_until, status, address, notes, needs_transport, price, payment_status,
     response_deadline, created_by_id, created_at, updated_at)
SELECT %(client)s, %(service)s, (%(therapists)s::bigint[])[1 + n.n %% %(count)s],
       s.start, s.start + interval '60 minutes', s.start + interval '75 minutes', 0,
       s.start, s.start + interval '75 minutes',
       'pending', '', '', false, 900.00, 'unpaid', s.start, %(user)s, now(), now()
FROM n, LATERAL (
    SELECT TIMESTAMPTZ '2099-01-01 00:00+00' + (n.n / %(count)s) * interval '75 minutes'
        AS start
) s
RETURNING id
"""


def _insert_params() -> dict:
    therapists = [int(t) for t in os.environ["BENCH_INSERT_THERAPISTS"].split(",")]
    return {
        "client": int(os.environ["BENCH_INSERT_CLIENT"]),
        "service": int(os.environ["BENCH_INSERT_SERVICE"]),
        "user": int(os.environ["BENCH_INSERT_USER"]),
        "therapists": therapists,
        "count": len(therapists),
    }


def bare(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b'{"ok": true}', content_type="application/json")


@csrf_exempt
def insert(request: HttpRequest) -> HttpResponse:
    if request.method != "POST":
        return HttpResponse(status=405)
    with connection.cursor() as cursor:
        cursor.execute(INSERT_SQL, _INSERT_PARAMS or _load())
        (pk,) = cursor.fetchone()
    return HttpResponse(b'{"id": %d}' % pk, content_type="application/json", status=201)


_INSERT_PARAMS: dict = {}


def _load() -> dict:
    _INSERT_PARAMS.update(_insert_params())
    return _INSERT_PARAMS


urlpatterns = [
    path("bench/bare/", bare),
    path("bench/insert/", insert),
    path("bench/raw-booking/", raw_booking),
    path("bench/raw-booking-transport/", raw_booking_transport),
    *product_urlpatterns,
]
