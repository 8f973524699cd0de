"""An admin takes stock away (seats lost with a smaller room, copies damaged): the orders it
leaves without stock are cancelled if unpaid, refunded if paid ("no stock after pay:
refund", the book-purchase seed).

Taken first from what is on sale. The rest is owed (`products.to_withdraw`) by the live
orders that hold the product, newest first, unpaid ones before paid ones: each is cancelled
or its refund asked for, until what they hold covers what is owed. As they are cancelled or
refunded, `release_stock` writes the owed units off instead of putting them back on sale, so
`total_stock = stock + held by live orders` holds at every moment, and a refund that fails
leaves the debt standing (the order is still paid and still holds its stock).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import journal
from db.models import Order, OrderItem, Product
from db.orders import close_order
from db.refunds import RefundAsked, request_refund
from domain.confirmation import AuditRecord
from domain.statuses import OrderStatus, RefundStatus

UNFULFILLABLE = "system:unfulfillable"  # who asks for the refund of an order left without stock


class WithdrawRefused(Exception):
    """More than the product was ever stocked with: a 409 with the reason."""


@dataclass
class Withdrawal:
    sku: str
    quantity: int
    from_stock: int  # taken from what was on sale
    cancelled: list[uuid.UUID] = field(default_factory=list)  # unpaid orders, cancelled
    refunds: list[tuple[uuid.UUID, RefundAsked]] = field(default_factory=list)  # paid orders
    owed: int = 0  # still to be written off as the orders above are cancelled or refunded


async def withdraw_stock(
    s: AsyncSession, sku: str, quantity: int, *, admin: str, reason: str
) -> Withdrawal | None:
    """None if no such product. The caller tells the cancelled orders' lifecycles and starts
    the refunds' workflows once this transaction has committed."""
    product = await s.scalar(select(Product).where(Product.sku == sku).with_for_update())
    if product is None:
        return None
    withdrawable = product.total_stock - product.to_withdraw
    if quantity > withdrawable:
        raise WithdrawRefused(
            f"{sku} has {withdrawable} unit(s) that could be withdrawn; {quantity} asked"
        )
    free = min(product.stock, quantity)
    short = quantity - free
    await s.execute(
        update(Product)
        .where(Product.sku == sku)
        .values(
            stock=Product.stock - free,
            total_stock=Product.total_stock - free,
            to_withdraw=Product.to_withdraw + short,
        )
    )
    done = Withdrawal(sku, quantity, free)
    await journal.write_audit(
        s,
        [
            AuditRecord(
                None,
                admin,
                "stock.withdrawn",
                f"stock.withdrawn:{sku}:{uuid.uuid4()}",
                {"sku": sku, "quantity": quantity, "from_stock": free, "reason": reason},
            )
        ],
    )
    if short == 0:
        return done
    await _settle_holders(s, done, short, admin, f"{sku} withdrawn by {admin}: {reason}")
    owed = await s.scalar(select(Product.to_withdraw).where(Product.sku == sku))
    done.owed = owed or 0
    return done


async def _settle_holders(
    s: AsyncSession, done: Withdrawal, short: int, admin: str, why: str
) -> None:
    """Cancels or refunds the live orders holding the product, unpaid and newest first, until
    what they hold covers the `short` units not on sale; records each in `done`."""
    holders = await s.execute(
        select(Order.id, Order.status, OrderItem.quantity)
        .join(OrderItem, OrderItem.order_id == Order.id)
        .where(
            OrderItem.sku == done.sku,
            Order.status.in_((OrderStatus.AWAITING_PAYMENT, OrderStatus.PAID)),
        )
        .order_by((Order.status == OrderStatus.PAID).asc(), Order.created_at.desc())
    )
    covered = 0
    for order_id, status, held in holders.all():
        if covered >= short:
            break
        if status == OrderStatus.AWAITING_PAYMENT:
            changed, _, _ = await close_order(s, order_id, "admin", admin)
            if changed:  # not if its payment is stored already: it is about to be paid
                done.cancelled.append(order_id)
                covered += held
            continue
        asked = await request_refund(
            s, order_id, actor=UNFULFILLABLE, is_admin=True, reason=why, window_seconds=0
        )
        if asked.status == RefundStatus.PENDING:
            done.refunds.append((order_id, asked))
            covered += held
