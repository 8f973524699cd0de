"""What a checkout takes from the products: their stock, reserved for every item or none, the
price, and the order's one vendor and whether it needs that vendor's acceptance (issue 28),
read from the rows the reservation returns anyway (no query more on the hot path).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import OrderItem, Product


class OutOfStock(Exception):
    """Unknown skus, or not enough stock: every one of them (SEQ-BP-002), nothing reserved."""

    def __init__(self, skus: list[str]) -> None:
        super().__init__(", ".join(skus))
        self.skus = skus


class MixedCurrencies(Exception):
    pass


class MixedVendors(Exception):
    """The items are of more than one vendor (nothing reserved: the checkout rolls back)."""

    def __init__(self, vendors: list[str]) -> None:
        super().__init__(", ".join(vendors))
        self.vendors = vendors


@dataclass(frozen=True)
class Line:
    """One reserved item, as its product was when it was reserved."""

    sku: str
    quantity: int
    name: str
    unit_amount: int
    currency: str
    vendor: str | None
    requires_acceptance: bool


@dataclass(frozen=True)
class Reserved:
    lines: list[Line]
    amount: int
    currency: str
    vendor: str | None  # the one vendor of every item (None: the organizer's own)
    needs_acceptance: bool  # a product requires the vendor's acceptance once paid

    def order_items(self, order_id: uuid.UUID) -> list[OrderItem]:
        """The order's item rows, as reserved (names and prices as they are now)."""
        return [
            OrderItem(
                order_id=order_id,
                sku=line.sku,
                name=line.name,
                quantity=line.quantity,
                unit_amount=line.unit_amount,
            )
            for line in self.lines
        ]


async def price(s: AsyncSession, items: dict[str, int]) -> Reserved:
    """What the items cost and who sells them, read without a lock (a product's price,
    currency and vendor never change). OutOfStock names every sku that is unknown or short
    now; MixedCurrencies and MixedVendors refuse what one order cannot hold. Nothing is taken
    yet: `take_stock` does that, last."""
    rows = {
        row.sku: row
        for row in await s.execute(
            select(
                Product.sku,
                Product.stock,
                Product.name,
                Product.unit_amount,
                Product.currency,
                Product.vendor,
                Product.requires_acceptance,
            ).where(Product.sku.in_(items))
        )
    }
    unavailable = [sku for sku in sorted(items) if sku not in rows or rows[sku].stock < items[sku]]
    if unavailable:
        raise OutOfStock(unavailable)
    lines = [
        Line(sku, items[sku], r.name, r.unit_amount, r.currency, r.vendor, r.requires_acceptance)
        for sku, r in sorted((sku, rows[sku]) for sku in items)
    ]
    amount, currency = _priced(lines)
    vendor = _one_vendor(lines)
    return Reserved(lines, amount, currency, vendor, any(i.requires_acceptance for i in lines))


async def take_stock(s: AsyncSession, items: dict[str, int]) -> None:
    """Takes every item's quantity off its product's stock, or raises OutOfStock naming the
    skus that were short (the caller's transaction rolls back what was taken). The checkout's
    last statement: in a drop every checkout updates the same product row, whose lock is held
    until commit, so everything else the order writes comes before it."""
    short = []
    # Sorted, so two orders for the same skus lock rows in the same order (no deadlock).
    for sku in sorted(items):
        taken = await s.scalar(
            update(Product)
            .where(Product.sku == sku, Product.stock >= items[sku])
            .values(stock=Product.stock - items[sku])
            .returning(Product.sku)
        )
        if taken is None:
            short.append(sku)
    if short:
        raise OutOfStock(short)


def _priced(lines: list[Line]) -> tuple[int, str]:
    """The reserved lines' total, in their one currency."""
    currencies = {line.currency for line in lines}
    if len(currencies) != 1:
        raise MixedCurrencies(sorted(currencies))
    return sum(line.quantity * line.unit_amount for line in lines), currencies.pop()


def _one_vendor(lines: list[Line]) -> str | None:
    """The order's vendor. Products of no vendor (the organizer's own) mix with each other,
    but not with a vendor's: its vendor would see, and accept or reject, items it does not
    sell, so that is refused as mixed too."""
    vendors = {line.vendor for line in lines}
    if len(vendors) > 1:
        raise MixedVendors(sorted(v or "(no vendor)" for v in vendors))
    return vendors.pop()
