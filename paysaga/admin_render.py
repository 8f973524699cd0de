"""How `paysaga admin` prints for people: `show`'s report of one payment and `cases`'s
table, fitted to a terminal or, to a pipe or file, a fixed wide one. Whatever a gateway sent
is escaped before it reaches a terminal."""

from __future__ import annotations

import sys
from collections import Counter
from datetime import UTC, datetime, timedelta

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from domain.money import format_money
from domain.statuses import CaseState, OrderStatus
from domain.views import CaseView, OrderView, PaymentReport, StoredPaymentView, WorkflowView

# Tables printed to a pipe or file: wide enough that no column is cut.
PIPE_WIDTH = 160


# --- show ---------------------------------------------------------------------------------


def show_report(report: PaymentReport) -> list[RenderableType]:
    now = datetime.now(UTC)
    return [
        Text(f"{report.provider} {clean(report.transaction_id)}", style="bold"),
        _payment_part(report.payment, now),
        _order_part(report.order, now),
        *_cases_part(report.cases, now),
        _workflow_part(report.workflow, now),
    ]


def _payment_part(payment: StoredPaymentView | None, now: datetime) -> RenderableType:
    if payment is None:
        return Text("Payment: none stored for this transaction.")
    return _fields(
        f"Payment #{payment.id}",
        [
            ("status", payment.status),
            ("amount", format_money(payment.amount, payment.currency)),
            ("intent id", payment.intent_id),
            ("order id", payment.order_id),
            ("created", _when(payment.created_at, now)),
            ("confirmed", _when(payment.confirmed_at, now)),
        ],
    )


def _order_part(order: OrderView | None, now: datetime) -> RenderableType:
    if order is None:
        return Text("Order: none (no stored payment or case names one).")
    attendee = order.attendee
    people = None
    if attendee:
        email = f"<{attendee.email}>" if attendee.email else ""
        people = " ".join(part for part in (attendee.name, email) if part)
    attempts = ", ".join(f"{p.provider} {p.intent_id} {p.status}" for p in order.payments)
    return _fields(
        f"Order {order.id}",
        [
            ("status", order.status),
            ("amount", format_money(order.amount, order.currency)),
            ("customer", order.customer_id),
            ("attendee", people),
            ("created", _when(order.created_at, now)),
            ("expires at", _when(order.expires_at, now)),
            (OrderStatus.PAID, _when(order.paid_at, now)),
            (OrderStatus.CANCELLED, _when(order.cancelled_at, now)),
            ("cancel reason", order.cancel_reason),
            ("ticket", order.ticket.code if order.ticket else None),
            ("attempts", attempts or None),
        ],
    )


def _cases_part(cases: list[CaseView], now: datetime) -> list[RenderableType]:
    if not cases:
        return [Text("Cases: none.")]
    out: list[RenderableType] = [_cases_table(cases, now, title=f"Cases ({len(cases)})")]
    for case in cases:
        if case.resolution:
            when = _when(case.resolved_at, now)
            out.append(Text(f"  case {case.id} resolved {when}: {clean(case.resolution)}"))
    return out


def _workflow_part(workflow: WorkflowView, now: datetime) -> RenderableType:
    rows: list[tuple[str, object]] = [("status", workflow.status.replace("_", " "))]
    if workflow.started_at:
        rows.append(("started", _when(workflow.started_at, now)))
    if workflow.closed_at:
        rows.append(("closed", _when(workflow.closed_at, now)))
    state = workflow.state
    if state is not None:
        queued = ", ".join(f"{q.action} by {q.request.admin}" for q in state.pending_requests)
        rows += [
            ("state", state.state),
            ("phase", state.phase),
            ("outcome", state.outcome),
            ("order id", state.order_id),
            ("attached to", state.attach_to),
            ("parked as", state.parked_as),
            ("cases opened", ", ".join(state.cases) or None),
            ("failing steps", "; ".join(f"{k}: {v}" for k, v in state.stuck.items()) or None),
            ("ticket", state.ticket_code),
            ("queued requests", queued or None),
            ("audit pending", len(state.pending_audit) or None),
            ("run", state.runs),
        ]
    if workflow.error:
        rows.append(("note", workflow.error))
    return _fields(f"Workflow {workflow.id}", rows)


def _fields(title: str, rows: list[tuple[str, object]]) -> Table:
    table = Table(
        title=Text(clean(title), style="bold"),
        title_justify="left",
        show_header=False,
        box=None,
        padding=(0, 1, 0, 2),
    )
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    for name, value in rows:
        table.add_row(Text(name), Text("—" if value is None else clean(str(value))))
    return table


# --- cases --------------------------------------------------------------------------------


def cases_report(cases: list[CaseView], *, include_resolved: bool) -> list[RenderableType]:
    if not cases:
        return [Text("No cases." if include_resolved else "No open cases.")]
    out: list[RenderableType] = [_cases_table(cases, datetime.now(UTC))]
    per_kind = Counter(case.kind for case in cases)
    kinds = ", ".join(
        f"{kind} {n}" for kind, n in sorted(per_kind.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    if include_resolved:
        still_open = sum(case.state == CaseState.OPEN for case in cases)
        total = f"{_plural(len(cases), 'case')} ({still_open} open)"
    else:
        total = _plural(len(cases), "open case")
    out.append(Text(f"{total}: {clean(kinds)}"))
    return out


def _cases_table(
    cases: list[CaseView],
    now: datetime,
    *,
    title: str | None = None,
) -> Table:
    table = Table(
        title=Text(title, style="bold") if title else None,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
    )
    table.add_column("id", justify="right", no_wrap=True)
    table.add_column("kind", no_wrap=True)
    table.add_column("provider", no_wrap=True)
    table.add_column("transaction id", overflow="fold")
    table.add_column("order", no_wrap=True)
    table.add_column("amount", justify="right", no_wrap=True)
    table.add_column("opened", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("reason", overflow="fold")
    for case in cases:
        table.add_row(
            Text(str(case.id)),
            Text(clean(case.kind)),
            Text(clean(case.provider)),
            Text(clean(case.transaction_id)),
            Text("—" if case.order_id is None else str(case.order_id)[:8]),
            Text(format_money(case.amount, case.currency)),
            Text(_when(case.opened_at, now) or ""),
            Text(case.state, style="green" if case.state == CaseState.RESOLVED else "yellow"),
            Text(clean(case.reason or "")),
        )
    return table


# --- formatting ---------------------------------------------------------------------------


def emit(renderables: list[RenderableType]) -> None:
    """rich fits a terminal's width; a pipe or file gets a fixed, wide one and no padding
    at the ends of lines."""
    if sys.stdout.isatty():
        console = Console(highlight=False)
        for renderable in renderables:
            console.print(renderable)
        return
    console = Console(width=PIPE_WIDTH, highlight=False)
    with console.capture() as capture:
        for renderable in renderables:
            console.print(renderable)
    lines = capture.get().splitlines()
    sys.stdout.write("".join(line.rstrip() + "\n" for line in lines))


def _age(then: datetime, now: datetime) -> str:
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def _when(at: datetime | None, now: datetime) -> str | None:
    """ "3m ago (2025-01-31 09:15:02 UTC)"; a time still ahead reads "in 12m"."""
    if at is None:
        return None
    then = at.astimezone(UTC)
    stamp = then.strftime("%Y-%m-%d %H:%M:%S UTC")
    if then > now + timedelta(seconds=1):
        return f"in {_age(now, then).removesuffix(' ago')} ({stamp})"
    return f"{_age(then, now)} ({stamp})"


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def clean(value: str) -> str:
    """What a gateway sent can reach these tables: escape control characters (a terminal
    would act on them) rather than print them."""
    if value.isprintable():
        return value
    return "".join(ch if ch.isprintable() or ch == "\n" else repr(ch)[1:-1] for ch in value)
