"""`paysaga admin check`: the financial invariants, verified against a live database.

Rules (each violation names its rule):
- `paid_order_payment`: an order `paid` has exactly one `paid` payment, of its own amount and
  currency; and no order of any status has more than one `paid` payment.
- `stored_not_paid`: a `paid` payment whose order still awaits payment, with no confirmation
  workflow running to finish it.
- `unique_transaction`: at most one payment per (provider, transaction id).
- `status_change_audited`: every order `paid` has its `order.status_changed` audit entry, or
  the entry is pending in its confirmation workflow (the 6a fallback).
- `ticket_for_unpaid_order`: no ticket for an order that was never paid.
- `payment_without_order_has_case`: every confirmation parked without an order (unmatched,
  amount mismatch) has an open case; every one resolved or refunded has a resolved case.
- `stock_exact`: a product's stock is what it was stocked with less what live (awaiting or
  paid) orders hold: a cancelled order's stock came back once, never twice.
- `paid_and_cancelled`: no order is both: a cancelled order has no `OrderPaid`, a paid one no
  `OrderCancelled`.
- `state_change_has_event`: every order has `OrderCreated`; paid (or refunded) `OrderPaid`;
  cancelled `OrderCancelled`; every stored payment `PaymentConfirmed`; every failed attempt
  `PaymentFailed`; every paid order `OrderPlaced` (written with `OrderPaid`; an order paid
  while a lifecycle from before the window keeper held it: or that lifecycle still running).
- `window_held`: no order awaits payment more than `WINDOW_GRACE_SECONDS` (in
  `db.order_invariants`) past its window's end without money stored for it (the window
  keeper closes it within a poll, or after its gateway look-up).
- `late_payment_has_case`: money stored for an order that was cancelled first is parked with
  a `late_payment` case (resolved once refunded, or settled by an admin), or its confirmation
  is still running.
- `refunds_exact`: money goes back once and in full: a succeeded refund is of its payment's
  amount and currency (of parked money never stored: of what its case says was paid), and a
  `refunded` order has a succeeded refund, its payment `refunded`
  and a `PaymentRefunded` event.
- `vendor_acceptance` (issue 28): a paid order that needs acceptance is pending within its
  window, accepted, or rejected with its refund under way or done (`db.vendor_invariants`).
The Temporal parts are scoped to one task queue, so a shared server is checked per stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError

from db.order_invariants import UNPLACED, Violation, unplaced, window_rules
from db.vendor_invariants import vendor_acceptance as accepting
from domain import keys
from domain.confirmation import ConfirmationState
from domain.payments import confirmation_workflow_id
from domain.statuses import CaseState, OrderStatus
from domain.workflow_names import CONFIRM_PAYMENT, PAYMENT_STATE, STATE, TRANSACTION_ID

PAID_ORDER_PAYMENT = text(
    """
    SELECT o.id, o.status, o.amount, o.currency,
           count(p.id) FILTER (WHERE p.status = 'paid') AS paid,
           count(p.id) FILTER (WHERE p.status = 'paid' AND p.amount = o.amount
                                 AND p.currency = o.currency) AS matching
    FROM orders o LEFT JOIN payments p ON p.order_id = o.id
    GROUP BY o.id
    HAVING (o.status = 'paid' AND (count(p.id) FILTER (WHERE p.status = 'paid') <> 1
            OR count(p.id) FILTER (WHERE p.status = 'paid' AND p.amount = o.amount
                                     AND p.currency = o.currency) <> 1))
        OR count(p.id) FILTER (WHERE p.status = 'paid') > 1
    """
)
STORED_NOT_PAID = text(
    """
    SELECT p.provider, p.transaction_id, p.order_id FROM payments p
    JOIN orders o ON o.id = p.order_id
    WHERE p.status = 'paid' AND o.status = 'awaiting_payment'
    """
)
UNIQUE_TRANSACTION = text(
    """
    SELECT provider, transaction_id, count(*) FROM payments
    WHERE transaction_id IS NOT NULL GROUP BY provider, transaction_id HAVING count(*) > 1
    """
)
UNAUDITED_PAID = text(
    """
    SELECT o.id, p.provider, p.transaction_id FROM orders o
    LEFT JOIN payments p ON p.order_id = o.id AND p.status = 'paid'
    WHERE o.status = 'paid' AND NOT EXISTS (
        SELECT 1 FROM audit_log a
        WHERE a.dedupe_key = replace(:paid_key, '{order_id}', o.id::text))
    """
).bindparams(paid_key=keys.status_changed("{order_id}", OrderStatus.PAID))
TICKET_UNPAID = text(
    """
    SELECT t.order_id, o.status FROM tickets t JOIN orders o ON o.id = t.order_id
    WHERE o.status NOT IN ('paid', 'refunded')
    """
)
CASES = text("SELECT provider, transaction_id, state FROM reconciliation_cases")
STOCK = text(
    """
    SELECT p.sku, p.total_stock, p.stock, coalesce(r.held, 0) FROM products p
    LEFT JOIN (
        SELECT i.sku, sum(i.quantity) AS held FROM order_items i
        JOIN orders o ON o.id = i.order_id
        WHERE o.status IN ('awaiting_payment', 'paid') GROUP BY i.sku
    ) r ON r.sku = p.sku
    WHERE p.total_stock <> p.stock + coalesce(r.held, 0)
    """
)
PAID_AND_CANCELLED = text(
    """
    SELECT o.id, o.status FROM orders o JOIN events e ON e.order_id = o.id
    WHERE (o.status = 'cancelled' AND e.type = 'OrderPaid')
       OR (o.status IN ('paid', 'refunded') AND e.type = 'OrderCancelled')
    """
)
MISSING_EVENTS = text(
    """
    SELECT o.id, 'OrderCreated' FROM orders o WHERE NOT EXISTS (
        SELECT 1 FROM events e WHERE e.order_id = o.id AND e.type = 'OrderCreated')
    UNION ALL
    SELECT o.id, 'OrderPaid' FROM orders o WHERE o.status IN ('paid', 'refunded') AND NOT EXISTS (
        SELECT 1 FROM events e WHERE e.order_id = o.id AND e.type = 'OrderPaid')
    UNION ALL
    SELECT o.id, 'OrderCancelled' FROM orders o WHERE o.status = 'cancelled' AND NOT EXISTS (
        SELECT 1 FROM events e WHERE e.order_id = o.id AND e.type = 'OrderCancelled')
    UNION ALL
    SELECT p.order_id, 'PaymentConfirmed' FROM payments p
    WHERE p.status IN ('paid', 'refunded') AND NOT EXISTS (
        SELECT 1 FROM events e WHERE e.order_id = p.order_id AND e.type = 'PaymentConfirmed'
        AND e.payload->>'transaction_id' = p.transaction_id)
    UNION ALL
    SELECT p.order_id, 'PaymentFailed' FROM payments p WHERE p.status = 'failed' AND NOT EXISTS (
        SELECT 1 FROM events e WHERE e.order_id = p.order_id AND e.type = 'PaymentFailed'
        AND e.payload->>'intent_id' = p.intent_id)
    """
)
LATE_PAYMENTS = text(
    """
    SELECT p.provider, p.transaction_id, p.order_id, p.status FROM payments p
    JOIN orders o ON o.id = p.order_id
    WHERE o.status = 'cancelled' AND p.status IN ('paid', 'refunded')
      AND NOT EXISTS (
        SELECT 1 FROM reconciliation_cases c
        WHERE c.provider = p.provider AND c.transaction_id = p.transaction_id
          AND c.kind = 'late_payment'
          AND (p.status = 'paid' OR c.state = 'resolved'))
    """
)

REFUNDS = text(
    """
    SELECT o.id::text, 'refunded without a succeeded refund of its refunded payment'
    FROM orders o WHERE o.status = 'refunded' AND NOT EXISTS (
        SELECT 1 FROM refunds r JOIN payments p
          ON p.provider = r.provider AND p.transaction_id = r.transaction_id
        WHERE r.order_id = o.id AND r.status = 'succeeded' AND p.status = 'refunded')
    UNION ALL
    SELECT r.provider || ' ' || r.transaction_id,
           'refunded ' || r.amount || ' ' || r.currency || ' of ' || p.amount || ' ' || p.currency
    FROM refunds r JOIN payments p
      ON p.provider = r.provider AND p.transaction_id = r.transaction_id
    WHERE r.status = 'succeeded' AND (r.amount <> p.amount OR r.currency <> p.currency)
    UNION ALL
    SELECT r.provider || ' ' || r.transaction_id,
           'refunded ' || r.amount || ' ' || r.currency || ' of money no payment or case holds'
    FROM refunds r
    WHERE r.status = 'succeeded'
      AND NOT EXISTS (SELECT 1 FROM payments p
                      WHERE p.provider = r.provider AND p.transaction_id = r.transaction_id)
      AND NOT EXISTS (SELECT 1 FROM reconciliation_cases c
                      WHERE c.provider = r.provider AND c.transaction_id = r.transaction_id
                        AND c.kind <> 'refund_failed'
                        AND c.amount = r.amount AND c.currency = r.currency)
    UNION ALL
    SELECT o.id::text, 'refunded without a PaymentRefunded event' FROM orders o
    WHERE o.status = 'refunded' AND NOT EXISTS (
        SELECT 1 FROM events e WHERE e.order_id = o.id AND e.type = 'PaymentRefunded')
    """
)


@dataclass(frozen=True)
class _Unsettled:
    """Rows whose verdict depends on what a workflow is still doing."""

    stored_not_paid: list[Row[str, str, Any]]  # provider, transaction id, order id
    unaudited: list[Row[Any, str | None, str | None]]  # order id, its paid payment's
    unplaced: list[Any]  # order ids
    late: list[Row[str, str, Any, str]]  # provider, transaction id, order id, status
    cases: dict[tuple[str, str], set[str]]


async def check_invariants(
    sessions: async_sessionmaker[AsyncSession], client: Client | None, task_queue: str
) -> list[Violation]:
    async with sessions() as s:
        found = await _database_rules(s)
        unsettled = await _unsettled(s)
    found += await _stored_not_paid(client, unsettled.stored_not_paid)
    found += await _unaudited(client, unsettled.unaudited)
    found += await unplaced(sessions, client, unsettled.unplaced, _status)
    found += await _late_payments(client, unsettled.late)
    found += await _parked_have_cases(client, task_queue, unsettled.cases)
    return found


async def _database_rules(s: AsyncSession) -> list[Violation]:
    """The rules the database alone decides."""
    found: list[Violation] = []
    for order_id, status, amount, currency, paid, matching in await s.execute(PAID_ORDER_PAYMENT):
        found.append(
            Violation(
                "paid_order_payment",
                f"order {order_id} ({status}, {amount} {currency}) has {paid} paid "
                f"payment(s), {matching} of its amount and currency",
            )
        )
    for provider, transaction_id, count in await s.execute(UNIQUE_TRANSACTION):
        found.append(
            Violation("unique_transaction", f"{count} payments for {provider} {transaction_id}")
        )
    for order_id, status in await s.execute(TICKET_UNPAID):
        found.append(Violation("ticket_for_unpaid_order", f"order {order_id} is {status}"))
    for sku, total, stock, held in await s.execute(STOCK):
        found.append(
            Violation(
                "stock_exact",
                f"{sku}: stocked with {total}, {stock} left, {held} held by live orders",
            )
        )
    for order_id, status in await s.execute(PAID_AND_CANCELLED):
        found.append(Violation("paid_and_cancelled", f"order {order_id} ({status})"))
    for order_id, missing in await s.execute(MISSING_EVENTS):
        found.append(
            Violation("state_change_has_event", f"order {order_id} has no {missing} event")
        )
    for subject, problem in await s.execute(REFUNDS):
        found.append(Violation("refunds_exact", f"{subject}: {problem}"))
    found += await window_rules(s)
    found += [Violation("vendor_acceptance", f"order {o}: {p}") for o, p in await accepting(s)]
    return found


async def _unsettled(s: AsyncSession) -> _Unsettled:
    cases: dict[tuple[str, str], set[str]] = {}
    for provider, transaction_id, state in await s.execute(CASES):
        cases.setdefault((provider, transaction_id), set()).add(state)
    return _Unsettled(
        stored_not_paid=list((await s.execute(STORED_NOT_PAID)).all()),
        unaudited=list((await s.execute(UNAUDITED_PAID)).all()),
        unplaced=list((await s.execute(UNPLACED)).scalars().all()),
        late=list((await s.execute(LATE_PAYMENTS)).all()),
        cases=cases,
    )


async def _stored_not_paid(
    client: Client | None, rows: list[Row[str, str, Any]]
) -> list[Violation]:
    found: list[Violation] = []
    for provider, transaction_id, order_id in rows:
        state = await _running_state(client, confirmation_workflow_id(provider, transaction_id))
        if state is None:
            found.append(
                Violation(
                    "stored_not_paid",
                    f"payment {provider} {transaction_id} is paid, order {order_id} is not, "
                    "and no confirmation is running",
                )
            )
    return found


async def _unaudited(
    client: Client | None, rows: list[Row[Any, str | None, str | None]]
) -> list[Violation]:
    found: list[Violation] = []
    for order_id, provider, transaction_id in rows:
        key = keys.status_changed(str(order_id), OrderStatus.PAID)
        state = (
            await _running_state(client, confirmation_workflow_id(provider, transaction_id))
            if provider and transaction_id  # a paid payment has both; no payment: neither
            else None
        )
        if state is None or key not in state.pending_audit_keys:
            found.append(
                Violation(
                    "status_change_audited",
                    f"order {order_id} is paid without its audit entry or a pending fallback",
                )
            )
    return found


async def _late_payments(
    client: Client | None, rows: list[Row[str, str, Any, str]]
) -> list[Violation]:
    found: list[Violation] = []
    for provider, transaction_id, order_id, status in rows:
        if await _running_state(client, confirmation_workflow_id(provider, transaction_id)):
            continue
        found.append(
            Violation(
                "late_payment_has_case",
                f"payment {provider} {transaction_id} ({status}) for cancelled order {order_id} "
                "has no late_payment case in the matching state",
            )
        )
    return found


async def _running_state(client: Client | None, workflow_id: str) -> ConfirmationState | None:
    """A confirmation's state while it runs; None also when Temporal cannot say (then nothing
    can be confirmed pending, so it counts against). Its `state` query is asked by name."""
    if await _status(client, workflow_id) != WorkflowExecutionStatus.RUNNING:
        return None
    assert client is not None  # a status was read through it
    try:
        handle = client.get_workflow_handle(workflow_id)
        state: ConfirmationState = await handle.query(STATE, result_type=ConfirmationState)
    except RPCError:
        return None
    return state


async def _status(client: Client | None, workflow_id: str) -> WorkflowExecutionStatus | None:
    if client is None:
        return None
    try:
        return (await client.get_workflow_handle(workflow_id).describe()).status
    except RPCError:
        return None


async def _parked_have_cases(
    client: Client | None, task_queue: str, cases: dict[tuple[str, str], set[str]]
) -> list[Violation]:
    if client is None:
        return [Violation("payment_without_order_has_case", "Temporal unreachable: not checked")]
    found: list[Violation] = []
    query = (
        # A run that continued as new keeps its last PaymentState; only the latest run counts.
        f'WorkflowType = "{CONFIRM_PAYMENT}" AND TaskQueue = "{task_queue}" '
        f'AND ExecutionStatus != "ContinuedAsNew" AND {PAYMENT_STATE.name} IN '
        '("unmatched", "amount_mismatch", "resolved", "refunded")'
    )
    async for execution in client.list_workflows(query):
        attributes = {
            k.name: v for k, v in ((p.key, p.value) for p in execution.typed_search_attributes)
        }
        provider = execution.id.split("-", 2)[1]
        transaction_id = str(attributes.get(TRANSACTION_ID.name, execution.id.split("-", 2)[2]))
        state = str(attributes.get(PAYMENT_STATE.name))
        have = cases.get((provider, transaction_id), set())
        need = CaseState.OPEN if state in ("unmatched", "amount_mismatch") else CaseState.RESOLVED
        if need not in have:
            found.append(
                Violation(
                    "payment_without_order_has_case",
                    f"{execution.id} is {state} but has no {need} case",
                )
            )
    return found
