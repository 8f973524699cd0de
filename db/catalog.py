"""What a checkout takes from the products: their stock, reserved for every item or none, the
price, and the order's one vendor and whether it needs that vendor's acceptance (issue 28),
read from the rows the reservation returns anyway (no query more on the hot path).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import update
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


async def reserve(s: AsyncSession, items: dict[str, int]) -> Reserved:
    """Takes every item's quantity off its product's stock; OutOfStock names every sku that
    is unknown or short, MixedCurrencies and MixedVendors refuse what one order cannot hold
    (the caller's transaction then rolls back what was taken)."""
    lines: list[Line] = []
    unavailable = []
    # Sorted, so two orders for the same skus lock rows in the same order (no deadlock).
    for sku in sorted(items):
        quantity = items[sku]
        row = (
            await s.execute(
                update(Product)
                .where(Product.sku == sku, Product.stock >= quantity)
                .values(stock=Product.stock - quantity)
                .returning(
                    Product.name,
                    Product.unit_amount,
                    Product.currency,
                    Product.vendor,
                    Product.requires_acceptance,
                )
            )
        ).one_or_none()
        if row is None:
            unavailable.append(sku)  # go on: the answer names every unavailable sku
        else:
            lines.append(Line(sku, quantity, *row))
    if unavailable:
        raise OutOfStock(unavailable)
    amount, currency = _priced(lines)
    vendor = _one_vendor(lines)
    return Reserved(lines, amount, currency, vendor, any(i.requires_acceptance for i in lines))


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
