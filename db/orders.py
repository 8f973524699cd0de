"""Orders and products as the API writes them: a new product, an order placed with its stock
reserved, and the guarded status changes (paid, cancelled, placed) with the stock they
release. Payment attempts are in `db.attempts`, the order as read in `db.order_view`.

Online checkout takes two steps (SEQ-BP-002: the inventory check guards the whole
transaction, before any payment is initiated): `create_order` reserves the stock with a first
attempt whose intent id is only a placeholder (`OPENING`), then, once the gateway has made
the intent, `attach_intent` puts the real id on that attempt. Until then nobody holds
anything that could pay the order. If the gateway fails, the order is closed with
`CancelReason.CHECKOUT_FAILED`, its stock released (`api.checkout`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from db import journal
from db.acceptance import acceptance_on_payment, acceptance_opened
from db.catalog import price, take_stock
from db.holds import Limits, check_limits
from db.models import Order, OrderItem, Payment, Product
from db.order_view import placed_view
from domain import keys
from domain.confirmation import AuditRecord
from domain.statuses import CancelReason, OrderStatus, PaymentStatus
from domain.views import OrderView


class NotPayable(Exception):
    """The order is neither awaiting payment nor paid (cancelled, refunded)."""

    def __init__(self, status: str | None) -> None:
        super().__init__(f"order is {status or 'missing'}, cannot be marked paid")
        self.status = status


@dataclass(frozen=True)
class NewOrder:
    customer_id: str
    items: dict[str, int]  # sku -> quantity
    provider: str
    # The first attempt's intent: offline, an id minted here; None online, where the
    # gateway makes it once the stock is reserved (`attach_intent`).
    intent_id: str | None
    attendee_name: str | None
    attendee_email: str | None
    window_seconds: int = 900  # PAYSAGA_PAYMENT_WINDOW_SECONDS
    limits: Limits | None = None  # what one customer may hold and place (None: unlimited)
    accept_seconds: int = 900  # PAYSAGA_VENDOR_ACCEPT_SECONDS, if a product needs acceptance


async def create_product(s: AsyncSession, values: dict[str, Any]) -> bool:
    """False if the sku exists already."""
    created = await s.scalar(
        insert(Product)
        .values(**values, total_stock=values["stock"])
        .on_conflict_do_nothing(index_elements=["sku"])
        .returning(Product.id)
    )
    return created is not None


class Placed(NamedTuple):
    """A new order: its id, the end of its payment window, and how it reads (built from what
    was just written, so the checkout's answer costs no query)."""

    id: uuid.UUID
    expires_at: datetime
    view: OrderView


async def create_order(s: AsyncSession, new: NewOrder) -> Placed:
    """Reserves stock for every item or none (the caller's transaction rolls back on raise:
    `db.catalog`'s OutOfStock, MixedCurrencies, MixedVendors), within what the customer may
    hold (HoldLimit, TooManyOrders).

    Online (`new.intent_id` None) the first attempt's intent id is a placeholder until
    `attach_intent`, and the attendee is recorded only then: a checkout whose gateway failed
    keeps no one's personal data, and its cancellation mails nobody."""
    order_id = uuid.uuid4()
    opening = new.intent_id is None
    # Timestamps set here, not by the server: the answer is built without reading them back.
    now = datetime.now(UTC)
    expires_at = now + timedelta(seconds=new.window_seconds)
    if new.limits is not None:
        await check_limits(s, new.customer_id, sum(new.items.values()), new.limits)
    reserved = await price(s, new.items)
    amount, currency = reserved.amount, reserved.currency
    # Plain inserts, not the unit of work: the checkout is the hottest write path, and the
    # ORM's flush bookkeeping was a tenth of the API's CPU under eight checkouts at once.
    order = Order(
        id=order_id,
        customer_id=new.customer_id,
        status=OrderStatus.AWAITING_PAYMENT,
        amount=amount,
        currency=currency,
        attendee_name=None if opening else new.attendee_name,
        attendee_email=None if opening else new.attendee_email,
        expires_at=expires_at,
        created_at=now,
        updated_at=now,
        vendor=reserved.vendor,
        accept_seconds=new.accept_seconds if reserved.needs_acceptance else None,
    )
    items = reserved.order_items(order_id)
    payment = Payment(
        order_id=order_id,
        provider=new.provider,
        intent_id=opening_intent_id(order_id) if new.intent_id is None else new.intent_id,
        status=PaymentStatus.PENDING,
        amount=amount,
        currency=currency,
        created_at=now,
    )
    await s.execute(insert(Order).values(_columns(order)))
    await s.execute(insert(OrderItem), [_columns(i) for i in items])
    await s.execute(insert(Payment).values(_columns(payment)))
    view = placed_view(order, items, payment)
    await journal.emit(
        s,
        "OrderCreated",
        order_id,
        keys.event("OrderCreated", order_id),
        {"amount": amount, "currency": currency, "customer_id": new.customer_id},
    )
    await take_stock(s, new.items)  # last: see there
    return Placed(order_id, expires_at, view)


def _columns(row: Order | OrderItem | Payment) -> dict[str, Any]:
    """The values a new, unsaved row was given (what its INSERT writes)."""
    return {
        column.key: getattr(row, column.key)
        for column in row.__table__.columns
        if column.key in row.__dict__
    }


# The first attempt's intent id while the gateway is making the real one: no gateway's id has
# this shape, so no webhook, return or look-up can name it.
OPENING = "opening:"


def opening_intent_id(order_id: uuid.UUID) -> str:
    return f"{OPENING}{order_id}"


async def attach_intent(
    s: AsyncSession, order_id: uuid.UUID, intent_id: str, new: NewOrder
) -> bool:
    """Online checkout's second step: the gateway's intent on the order's first attempt, and
    the attendee on the order. False if the order was closed meanwhile (an admin cancelled it,
    or withdrew its stock; its window closed after a long stall), and then nothing changes.

    The order row is updated first, `WHERE status = 'awaiting_payment'`, as `close_order`
    updates it: of the two, the second waits for the first and sees what it did."""
    still_open = await s.scalar(
        update(Order)
        .where(Order.id == order_id, Order.status == OrderStatus.AWAITING_PAYMENT)
        .values(
            attendee_name=new.attendee_name,
            attendee_email=new.attendee_email,
            updated_at=func.now(),
        )
        .returning(Order.id)
    )
    if still_open is None:
        return False
    attached = await s.scalar(
        update(Payment)
        .where(
            Payment.order_id == order_id,
            Payment.intent_id == opening_intent_id(order_id),
            Payment.status == PaymentStatus.PENDING,
        )
        .values(intent_id=intent_id)
        .returning(Payment.id)
    )
    # Only the call that closes the order ends the pending attempt of an order awaiting
    # payment, and nobody else knows its placeholder id (no webhook or new attempt names it).
    assert attached is not None, f"order {order_id} lost its opening attempt"
    return True


async def mark_paid(
    s: AsyncSession, order_id: uuid.UUID, provider: str, transaction_id: str
) -> bool:
    """UC-35 step 5, the one place an order becomes paid: only once this transaction's paid
    payment row exists, only from `awaiting_payment`, with its `OrderPaid` event and then
    `OrderPlaced` (SEQ-BP-002: confirmed for fulfilment), both in this transaction: nothing
    is left for a workflow per order to do once the order is paid.

    True if this call changed the order, False if it was paid already; NotPayable otherwise.
    """
    payment_stored = exists().where(
        and_(
            Payment.order_id == order_id,
            Payment.status == PaymentStatus.PAID,
            Payment.provider == provider,
            Payment.transaction_id == transaction_id,
        )
    )
    changed = (
        await s.execute(
            update(Order)
            .where(
                Order.id == order_id, Order.status == OrderStatus.AWAITING_PAYMENT, payment_stored
            )
            .values(status=OrderStatus.PAID, paid_at=func.now(), updated_at=func.now())
            .values(**acceptance_on_payment())  # issue 28: a vendor's acceptance window opens
            .returning(Order.id, Order.accept_by)
        )
    ).one_or_none()
    if changed is not None:
        # A newer attempt still open (the customer retried, then the older intent succeeded
        # after all) can no longer take money for this order.
        await s.execute(
            update(Payment)
            .where(Payment.order_id == order_id, Payment.status == PaymentStatus.PENDING)
            .values(status=PaymentStatus.CANCELLED)
        )
        await journal.emit(
            s,
            "OrderPaid",
            order_id,
            keys.event("OrderPaid", order_id),
            {"provider": provider, "transaction_id": transaction_id},
        )
        await _emit_placed(s, order_id)
        # Issue 28 (kept apart): an order that needs its vendor's acceptance now waits for
        # it; the transition's audit entry is written with it.
        if changed.accept_by is not None:
            await acceptance_opened(s, order_id, changed.accept_by)
        return True
    status = await s.scalar(select(Order.status).where(Order.id == order_id))
    if status == OrderStatus.PAID:
        return False
    raise NotPayable(status)


CANCEL_REASONS = tuple(CancelReason)


async def close_order(
    s: AsyncSession, order_id: uuid.UUID, reason: str, actor: str = "system:payment_window"
) -> tuple[bool, str | None, str | None]:
    """The one place an unpaid order is cancelled (window closed, customer, admin).

    The conditional UPDATE on the order's status is where a cancel and a confirmation racing
    it are decided: `mark_paid` updates the same row `WHERE status = 'awaiting_payment'`, so
    exactly one of them changes it. Only the call that changed it releases the stock, ends the
    pending attempt (`timeout` or `cancelled`) and writes `OrderCancelled`, so all of that
    happens once, with its audit entry (by `actor`). An order whose payment is stored (not yet
    marked paid) is not cancelled.
    Returns (changed, status after, the cancel reason if it is cancelled).
    """
    assert reason in CANCEL_REASONS
    # Money that arrived inside the window and is stored already wins: its confirmation is
    # finishing (step 5, perhaps waiting out an outage), so the order is not cancelled.
    payment_stored = exists().where(
        and_(Payment.order_id == order_id, Payment.status == PaymentStatus.PAID)
    )
    changed = await s.scalar(
        update(Order)
        .where(
            Order.id == order_id,
            Order.status == OrderStatus.AWAITING_PAYMENT,
            ~payment_stored,
        )
        .values(
            status=OrderStatus.CANCELLED,
            cancel_reason=reason,
            cancelled_at=func.now(),
            updated_at=func.now(),
        )
        .returning(Order.id)
    )
    if changed is None:
        row = (
            await s.execute(select(Order.status, Order.cancel_reason).where(Order.id == order_id))
        ).one_or_none()
        return (False, row.status, row.cancel_reason) if row else (False, None, None)
    await _wind_down(s, order_id, reason, actor)
    return True, OrderStatus.CANCELLED, reason


async def _wind_down(s: AsyncSession, order_id: uuid.UUID, reason: str, actor: str) -> None:
    """What the call that cancelled the order does, once: ends its pending attempt, releases
    its stock, writes `OrderCancelled` and the audit entry."""
    attempt_status = (
        PaymentStatus.TIMEOUT if reason == CancelReason.TIMEOUT else PaymentStatus.CANCELLED
    )
    ended = (
        await s.execute(
            update(Payment)
            .where(Payment.order_id == order_id, Payment.status == PaymentStatus.PENDING)
            .values(status=attempt_status)
            .returning(Payment.provider, Payment.intent_id)
        )
    ).all()
    items = await release_stock(s, order_id)
    detail = {
        "reason": reason,
        "released": [{"sku": sku, "quantity": q} for sku, q in items],
        "attempts_ended": [
            {"provider": p, "intent_id": i, "status": str(attempt_status)} for p, i in ended
        ],
    }
    key = keys.event("OrderCancelled", order_id)
    await journal.emit(s, "OrderCancelled", order_id, key, detail)
    await journal.write_audit(
        s,
        [
            AuditRecord(
                str(order_id),
                actor,
                "order.cancelled",
                keys.status_changed(str(order_id), OrderStatus.CANCELLED),
                {"from": OrderStatus.AWAITING_PAYMENT, "to": OrderStatus.CANCELLED} | detail,
            )
        ],
    )


async def release_stock(s: AsyncSession, order_id: uuid.UUID) -> list[tuple[str, int]]:
    """Gives an order's items back to stock (a cancel, a refund); its caller has just changed
    the order's status, so this runs once per order. Returns what it released."""
    # Sorted in Python, as create_order sorts: the database's collation may order skus
    # differently, and two lock orders for the same rows can deadlock.
    rows = await s.execute(
        select(OrderItem.sku, OrderItem.quantity).where(OrderItem.order_id == order_id)
    )
    items = sorted((sku, quantity) for sku, quantity in rows)
    for sku, quantity in items:
        # Units an admin withdrew while orders held them are written off first, not put
        # back on sale (`db.stock`). One statement: each side reads the row before it.
        await s.execute(
            update(Product)
            .where(Product.sku == sku)
            .values(
                stock=Product.stock + func.greatest(quantity - Product.to_withdraw, 0),
                total_stock=Product.total_stock - func.least(quantity, Product.to_withdraw),
                to_withdraw=func.greatest(Product.to_withdraw - quantity, 0),
            )
        )
    return items


async def mark_placed(s: AsyncSession, order_id: uuid.UUID) -> bool:
    """`OrderPlaced` for a paid order, once (its key): what a lifecycle workflow started
    before the window keeper still calls when it ends. `mark_paid` writes it itself now."""
    paid = await s.scalar(
        select(Order.id).where(Order.id == order_id, Order.status == OrderStatus.PAID)
    )
    if paid is None:
        return False
    await _emit_placed(s, order_id)
    return True


async def _emit_placed(s: AsyncSession, order_id: uuid.UUID) -> None:
    await journal.emit(s, "OrderPlaced", order_id, keys.event("OrderPlaced", order_id), {})
