"""Money in the reports (issue 15 item 7): a month of random payments and refunds, and the
report's figures against plain SQL sums over the same tables; the CSV's money blocks; the
bar chart's SVG parsed as XML. Real PostgreSQL."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client

from scheduling.models import Appointment, Payment, Refund
from scheduling.selectors.reports import build_report, csv_rows
from scheduling.views.charts import day_bars, nice_step
from tests import factories

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

MANILA = ZoneInfo("Asia/Manila")
MAY = {"first_day": date(2030, 5, 1), "last_day": date(2030, 5, 31)}
START = datetime(2030, 5, 1, tzinfo=MANILA)
END = datetime(2030, 6, 1, tzinfo=MANILA)
RECEIVED = ("succeeded", "partially_refunded", "refunded")
SVG = "{http://www.w3.org/2000/svg}"


def at(rng: random.Random) -> datetime:
    """A moment from three days before May to three days after, in Manila: the range's
    edges (midnight there, 16:00 UTC the day before) are crossed both ways."""
    first = datetime(2030, 4, 28, tzinfo=MANILA)
    return first + timedelta(minutes=rng.randrange(0, 40 * 24 * 60))


@pytest.fixture
def month(service):
    """About 240 payments on 120 appointments of four therapists, with refunds."""
    rng = random.Random(15)
    desk = factories.UserFactory(role="receptionist")
    therapists = [factories.therapist(service) for _ in range(4)]
    client = factories.ClientFactory()
    appointments = []
    for _ in range(120):
        start = at(rng)
        end = start + timedelta(minutes=60)
        appointments.append(
            Appointment.objects.create(
                client=client,
                service=service,
                therapist=rng.choice(therapists),
                start=start,
                end=end,
                blocked_until=end,
                status=rng.choice(["completed"] * 4 + ["no_show", "cancelled", "confirmed"]),
                price=Decimal(rng.choice(["700.00", "900.00", "1000.00", "1500.00"])),
                response_deadline=start,
            )
        )
    for appointment in appointments:
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            method = rng.choice(["cash", "cash", "ewallet", "gateway"])
            status = rng.choice(["succeeded"] * 5 + ["pending", "failed", "cancelled"])
            settled = at(rng)
            amount = Decimal(rng.randrange(100, 80000)) / 100
            payment = Payment.objects.create(
                appointment=appointment,
                amount=amount,
                method=method,
                status=status,
                reference="GC" if method == "ewallet" else "",
                gateway="fake" if method == "gateway" else "",
                collected_by=appointment.therapist if method != "gateway" else None,
                verified_by=desk if method != "gateway" and status == "succeeded" else None,
                verified_at=settled if method != "gateway" and status == "succeeded" else None,
                settled_at=settled if status == "succeeded" else None,
            )
            Payment.objects.filter(pk=payment.pk).update(created_at=settled - timedelta(hours=1))
            if status != "succeeded" or rng.random() < 0.6:
                continue
            refunded = Decimal("0")
            for _ in range(rng.choice([1, 1, 2])):
                part = min(amount - refunded, Decimal(rng.randrange(1, 40000)) / 100)
                if part <= 0:
                    break
                state = rng.choice(["processed", "processed", "pending", "failed"])
                when = settled + timedelta(hours=rng.randrange(1, 24 * 6))
                Refund.objects.create(
                    payment=payment,
                    amount=part,
                    method="cash" if method != "gateway" else "gateway",
                    status=state,
                    created_at=when,
                    processed_at=when if state == "processed" else None,
                )
                if state == "processed":
                    refunded += part
            if refunded:
                payment.refunded_amount = refunded
                payment.status = "refunded" if refunded == amount else "partially_refunded"
                payment.save(update_fields=["refunded_amount", "status"])
    return therapists


def sql(query: str, *params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def test_the_money_figures_equal_plain_sql_sums(month):
    report = build_report(**MAY)
    money = report.money

    received = dict(
        sql(
            """SELECT method, SUM(amount) FROM scheduling_payment
               WHERE status = ANY(%s) AND settled_at >= %s AND settled_at < %s
               GROUP BY method""",
            list(RECEIVED),
            START,
            END,
        )
    )
    refunded = dict(
        sql(
            """SELECT p.method, SUM(r.amount) FROM scheduling_refund r
               JOIN scheduling_payment p ON p.id = r.payment_id
               WHERE r.status = 'processed' AND r.processed_at >= %s AND r.processed_at < %s
               GROUP BY p.method""",
            START,
            END,
        )
    )
    assert received and refunded  # the data set has both
    for m in money.methods:
        assert m.collected == received.get(m.method, Decimal("0.00")), m.method
        assert m.refunded == refunded.get(m.method, Decimal("0.00")), m.method
    assert money.net == sum(received.values()) - sum(refunded.values())

    by_day_in = dict(
        sql(
            """SELECT (settled_at AT TIME ZONE 'Asia/Manila')::date, SUM(amount)
               FROM scheduling_payment
               WHERE status = ANY(%s) AND settled_at >= %s AND settled_at < %s GROUP BY 1""",
            list(RECEIVED),
            START,
            END,
        )
    )
    by_day_out = dict(
        sql(
            """SELECT (processed_at AT TIME ZONE 'Asia/Manila')::date, SUM(amount)
               FROM scheduling_refund
               WHERE status = 'processed' AND processed_at >= %s AND processed_at < %s
               GROUP BY 1""",
            START,
            END,
        )
    )
    assert [d.day for d in money.days] == [date(2030, 5, n) for n in range(1, 32)]
    for d in money.days:
        assert d.gross == by_day_in.get(d.day, Decimal("0.00")), d.day
        assert d.refunded == by_day_out.get(d.day, Decimal("0.00")), d.day
    assert sum(d.net for d in money.days) == money.net

    ((owed_count, owed_total),) = sql(
        """SELECT COUNT(*), COALESCE(SUM(a.price - COALESCE(k.kept, 0)), 0)
           FROM scheduling_appointment a
           LEFT JOIN (SELECT appointment_id, SUM(amount - refunded_amount) AS kept
                      FROM scheduling_payment
                      WHERE status IN ('succeeded', 'partially_refunded')
                      GROUP BY appointment_id) k ON k.appointment_id = a.id
           WHERE a.status = 'completed' AND a.start >= %s AND a.start < %s
             AND a.price > 0 AND COALESCE(k.kept, 0) < a.price""",
        START,
        END,
    )
    assert (money.owing_count, money.owing_total) == (owed_count, owed_total)
    assert owed_count > 0
    dues = [o.due for o in money.owing]
    assert dues == sorted(dues, reverse=True)

    per = {
        (pk, method): total
        for pk, method, total in sql(
            """SELECT collected_by_id, method, SUM(amount) FROM scheduling_payment
               WHERE method IN ('cash', 'ewallet') AND status = ANY(%s)
                 AND settled_at >= %s AND settled_at < %s GROUP BY 1, 2""",
            list(RECEIVED),
            START,
            END,
        )
    }
    waiting = dict(
        sql(
            """SELECT collected_by_id, SUM(amount) FROM scheduling_payment
               WHERE method IN ('cash', 'ewallet') AND status = 'pending'
                 AND created_at >= %s AND created_at < %s GROUP BY 1""",
            START,
            END,
        )
    )
    assert {c.therapist_id for c in money.collectors} == {pk for pk, _ in per} | set(waiting)
    for c in money.collectors:
        assert c.cash == per.get((c.therapist_id, "cash"), Decimal("0.00"))
        assert c.ewallet == per.get((c.therapist_id, "ewallet"), Decimal("0.00"))
        assert c.unverified == waiting.get(c.therapist_id, Decimal("0.00"))


def test_the_csv_carries_the_same_money(month):
    report = build_report(**MAY)
    rows = csv_rows(report, business="Demo", zone="Asia/Manila")
    money = report.money
    at_ = rows.index(["Money collected"])
    assert rows[at_ + 1] == ["Method", "Collected", "Refunded", "Net"]
    assert rows[at_ + 2 : at_ + 5] == [
        [m.label, str(m.collected), str(m.refunded), str(m.net)] for m in money.methods
    ]
    assert ["Total", str(money.collected), str(money.refunded), str(money.net)] in rows
    day_at = rows.index(["Money collected by day"])
    assert rows[day_at + 1] == ["Day", "Cash", "E-wallet", "Gateway", "Refunded", "Net"]
    days = rows[day_at + 2 : day_at + 33]
    assert [r[0] for r in days] == [f"2030-05-{n:02d}" for n in range(1, 32)]
    assert sum(Decimal(r[-1]) for r in days) == money.net
    owing_at = rows.index(["Outstanding balances (completed sessions)"])
    assert rows[owing_at + 1] == [
        "Appointment",
        "Start",
        "Client",
        "Therapist",
        "Price",
        "Paid",
        "Due",
    ]
    coll_at = rows.index(["Collections per therapist"])
    assert rows[coll_at + 1] == [
        "Therapist",
        "Cash verified",
        "E-wallet verified",
        "Verified total",
        "Not yet verified",
    ]
    assert rows[-1][0] == "Total" and rows[-1][4] == str(money.collector_totals.unverified)


def test_the_page_has_a_well_formed_accessible_svg_chart(month):
    manager = factories.UserFactory(role="manager")
    browser = Client()
    browser.force_login(manager)
    html = browser.get("/reports/", {"from": "2030-05-01", "to": "2030-05-31"}).content.decode()
    svg_text = html[html.index("<svg") : html.index("</svg>") + len("</svg>")]
    svg = ET.fromstring(svg_text)
    assert svg.tag == f"{SVG}svg" and svg.get("role") == "img"
    assert svg.find(f"{SVG}title") is not None and svg.find(f"{SVG}desc") is not None
    assert svg.get("aria-labelledby") == "money-chart-title money-chart-desc"
    bars = svg.findall(f"{SVG}rect")
    assert len(bars) == 31
    report = build_report(**MAY)
    assert [Decimal(b.get("data-value")) for b in bars] == [d.net for d in report.money.days]
    for bar in bars:
        assert float(bar.get("height")) >= 0 and float(bar.get("width")) > 0
    # The text alternative: the same figures in a table.
    assert 'id="money-by-day"' in html and 'id="money-by-method"' in html
    assert 'data-figure="collected"' in html and 'id="owing"' in html


def test_an_empty_range_draws_flat_bars():
    chart = day_bars([(date(2030, 5, d), Decimal("0")) for d in range(1, 4)])
    assert [b.height for b in chart.bars] == [0, 0, 0]
    assert chart.ticks[0].value == 0


def test_a_day_with_more_refunded_than_received_hangs_below_zero():
    chart = day_bars([(date(2030, 5, 1), Decimal("900")), (date(2030, 5, 2), Decimal("-300"))])
    up, down = chart.bars
    assert not up.negative and down.negative
    assert up.y + up.height == pytest.approx(chart.zero_y)
    assert down.y == pytest.approx(chart.zero_y) and down.height > 0
    assert nice_step(Decimal("1200")) == Decimal("500")
