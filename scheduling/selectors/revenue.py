"""Money in the reports (issue 15 item 7): what was collected, by method and by business
day, less what was refunded; the balances still owed; each therapist's collections.

Collected is cash-flow: a payment counts on the business day it was settled (a collection
when the desk verified it, a gateway payment when the gateway said paid), whatever its
status since (a refunded payment was still received that day); a refund counts, against
its payment's method, on the day it was processed. So a range's net is what came in less
what went back in it, and every figure is a SQL aggregate (four queries in all).

Read by selectors/reports.build_report only, so the page and the CSV cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db.models import F, Q, Sum
from django.db.models.functions import TruncDate

from scheduling.domain import business_zone
from scheduling.models import Appointment, Payment, PaymentMethod, PaymentState, Refund
from scheduling.models.gateways import RefundState
from scheduling.models.payments import COLLECTED_METHODS, SETTLED_STATES
from scheduling.states import AppointmentStatus

ZERO = Decimal("0.00")
CENTS = Decimal("0.01")
# Received at some point: settled, or settled and then (partly) refunded.
RECEIVED_STATES = (*SETTLED_STATES, PaymentState.REFUNDED)
METHODS = tuple(PaymentMethod)
METHOD_LABELS = {m.value: m.label for m in PaymentMethod}
# Delivered sessions whose price is owed: no-shows and cancellations owe nothing here.
OWING_STATUSES = (AppointmentStatus.COMPLETED,)
OUTSTANDING_LIMIT = 50


def cents(value: Decimal | None) -> Decimal:
    """A sum as the reports hold it: to the cent, nothing (an empty Sum) as 0.00.
    Not a display format: scheduling/formats.money writes it for people."""
    return (value or ZERO).quantize(CENTS)


@dataclass(frozen=True)
class DayMoney:
    day: date
    collected: dict[str, Decimal]  # by method
    refunded: Decimal

    @property
    def gross(self) -> Decimal:
        return cents(sum(self.collected.values(), ZERO))

    @property
    def net(self) -> Decimal:
        return cents(self.gross - self.refunded)

    def method(self, name: str) -> Decimal:
        return self.collected.get(name, ZERO)


@dataclass(frozen=True)
class MethodMoney:
    method: str
    label: str
    collected: Decimal
    refunded: Decimal

    @property
    def net(self) -> Decimal:
        return cents(self.collected - self.refunded)


@dataclass(frozen=True)
class Owing:
    appointment_id: int
    start: datetime
    client: str
    therapist: str
    price: Decimal
    paid: Decimal

    @property
    def due(self) -> Decimal:
        return cents(self.price - self.paid)


@dataclass(frozen=True)
class Collector:
    therapist_id: int
    name: str
    cash: Decimal
    ewallet: Decimal
    unverified: Decimal

    @property
    def verified(self) -> Decimal:
        return cents(self.cash + self.ewallet)


@dataclass(frozen=True)
class Money:
    days: list[DayMoney]
    methods: list[MethodMoney]
    owing: list[Owing]  # the largest first, at most OUTSTANDING_LIMIT
    owing_count: int
    owing_total: Decimal
    collectors: list[Collector]

    @property
    def collected(self) -> Decimal:
        return cents(sum((m.collected for m in self.methods), ZERO))

    @property
    def refunded(self) -> Decimal:
        return cents(sum((m.refunded for m in self.methods), ZERO))

    @property
    def net(self) -> Decimal:
        return cents(self.collected - self.refunded)

    @property
    def collector_totals(self) -> Collector:
        rows = self.collectors
        return Collector(
            therapist_id=0,
            name="Total",
            cash=cents(sum((r.cash for r in rows), ZERO)),
            ewallet=cents(sum((r.ewallet for r in rows), ZERO)),
            unverified=cents(sum((r.unverified for r in rows), ZERO)),
        )


def money_figures(
    *, first_day: date, last_day: date, start: datetime, end: datetime
) -> tuple[Money, dict[int, dict[str, Decimal]]]:
    """The money of the business days `first_day`..`last_day` ([start, end) in UTC), and
    each collector's sums by id: `with_names` names them from the report's names query."""
    zone = business_zone()
    received = (
        Payment.objects.filter(
            status__in=RECEIVED_STATES, settled_at__gte=start, settled_at__lt=end
        )
        .annotate(day=TruncDate("settled_at", tzinfo=zone))
        .values("day", "method")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    refunds = (
        Refund.objects.filter(
            status=RefundState.PROCESSED, processed_at__gte=start, processed_at__lt=end
        )
        .annotate(day=TruncDate("processed_at", tzinfo=zone))
        .values("day", "payment__method")
        .annotate(total=Sum("amount"))
        .order_by()
    )
    collected: dict[tuple[date, str], Decimal] = {}
    for row in received:
        collected[(row["day"], row["method"])] = cents(row["total"])
    refunded: dict[tuple[date, str], Decimal] = {}
    for row in refunds:
        refunded[(row["day"], row["payment__method"])] = cents(row["total"])
    days = [
        DayMoney(
            day=day,
            collected={m: collected.get((day, m), ZERO) for m in METHODS},
            refunded=cents(sum((refunded.get((day, m), ZERO) for m in METHODS), ZERO)),
        )
        for day in _days(first_day, last_day)
    ]
    methods = [
        MethodMoney(
            method=m,
            label=METHOD_LABELS[m],
            collected=cents(sum((v for (_, mm), v in collected.items() if mm == m), ZERO)),
            refunded=cents(sum((v for (_, mm), v in refunded.items() if mm == m), ZERO)),
        )
        for m in METHODS
    ]
    owing, owing_count, owing_total = _owing(start, end)
    money = Money(
        days=days,
        methods=methods,
        owing=owing,
        owing_count=owing_count,
        owing_total=owing_total,
        collectors=[],
    )
    return money, _collections(start, end)


def with_names(
    money: Money, collected: dict[int, dict[str, Decimal]], names: dict[int, str]
) -> Money:
    """`money` with each therapist's collections, named."""
    rows = [
        Collector(
            therapist_id=pk,
            name=names.get(pk, f"Staff #{pk}"),
            cash=cents(c.get("cash")),
            ewallet=cents(c.get("ewallet")),
            unverified=cents(c.get("unverified")),
        )
        for pk, c in collected.items()
    ]
    rows.sort(key=lambda r: (-r.verified, -r.unverified, r.name.lower(), r.therapist_id))
    return Money(
        days=money.days,
        methods=money.methods,
        owing=money.owing,
        owing_count=money.owing_count,
        owing_total=money.owing_total,
        collectors=rows,
    )


def _days(first_day: date, last_day: date) -> list[date]:
    return [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]


def _owing(start: datetime, end: datetime) -> tuple[list[Owing], int, Decimal]:
    """Completed sessions in the range whose kept payments fall short of the price."""
    rows = list(
        Appointment.objects.filter(
            status__in=OWING_STATUSES, start__gte=start, start__lt=end, price__gt=0
        )
        .with_paid()
        .filter(paid__lt=F("price"))
        .annotate(due=F("price") - F("paid"))
        .order_by("-due", "start", "pk")
        .values(
            "pk",
            "start",
            "client__name",
            "therapist__first_name",
            "therapist__last_name",
            "therapist__username",
            "price",
            "paid",
        )
    )
    owing = [
        Owing(
            appointment_id=r["pk"],
            start=r["start"],
            client=r["client__name"],
            therapist=f"{r['therapist__first_name']} {r['therapist__last_name']}".strip()
            or r["therapist__username"],
            price=cents(r["price"]),
            paid=cents(r["paid"]),
        )
        for r in rows
    ]
    return owing[:OUTSTANDING_LIMIT], len(owing), cents(sum((o.due for o in owing), ZERO))


def _collections(start: datetime, end: datetime) -> dict[int, dict[str, Decimal]]:
    """Per collector: cash and e-wallet verified in the range (by the day it settled),
    and what they recorded in the range that nobody has verified yet."""
    settled = Q(status__in=RECEIVED_STATES, settled_at__gte=start, settled_at__lt=end)
    waiting = Q(status=PaymentState.PENDING, created_at__gte=start, created_at__lt=end)
    rows = (
        Payment.objects.filter(method__in=COLLECTED_METHODS, collected_by__isnull=False)
        .filter(settled | waiting)
        .values("collected_by_id")
        .annotate(
            cash=Sum("amount", filter=settled & Q(method=PaymentMethod.CASH)),
            ewallet=Sum("amount", filter=settled & Q(method=PaymentMethod.EWALLET)),
            unverified=Sum("amount", filter=waiting),
        )
        .order_by()
    )
    return {r["collected_by_id"]: r for r in rows}
