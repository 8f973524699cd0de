"""What must hold, kept beside the real stack by the state machine (issue 12).

The model predicts, per order, the set of statuses it may be in (one, unless timing decides:
money racing the window's end may pay the order, or find it cancelled and be parked as a
late payment), and per sum of money sent in, the set of fates it may have. After every step,
once the system is quiet, what the stack shows must be inside those sets; the model then
collapses each set to what was seen, so the next step predicts from the truth.

Fates of money (one confirmation, `payment-{provider}-{tx}`):
- `applied`: its order is paid with it; `applied_refunded`: ... and refunded since;
- `late`: stored for an order cancelled first, parked with a `late_payment` case, its own
  refund started (offline: pending until the gateway's notice); `late_refunded`: refunded;
- `parked`: kept with an open case (unmatched, amount mismatch, already paid);
- `refund_pending`: an admin asked to refund parked money, the gateway is to answer;
- `refunded`: parked money sent back, its case resolved;
- `resolved`: an admin settled it outside paysaga, its case resolved.
Razorpay authorizations (online, against the Razorpay test server) are captured only for an
order that takes them, so they end `applied` (or `late`, the window closing between the
capture and the order's status change), or hold no money:
- `uncaptured`: left uncaptured for an order that could not take it, with an open
  `authorization_uncaptured` case (Razorpay voids it);
- `capture_refused`: the gateway refused the capture, the order left as it was, with an open
  `capture_refused` case.
Anything else (no order paid, no case, no refund) is money lost, and a violation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tests.support.signing import Request

PROVIDERS = ("razorpay", "stripe", "standard")
LIVE = frozenset({"awaiting_payment", "paid"})  # statuses that hold stock
# Money sent this close to the window's end (or later) may pay the order or arrive late.
NEAR_SECONDS = 3.0
# An order still awaiting payment this long after its window closed is not quiet yet.
GRACE_SECONDS = 0.5

APPLIED = "applied"
APPLIED_REFUNDED = "applied_refunded"
LATE = "late"
LATE_REFUNDED = "late_refunded"
PARKED = "parked"
REFUND_PENDING = "refund_pending"
REFUNDED = "refunded"
RESOLVED = "resolved"
UNCAPTURED = "uncaptured"
CAPTURE_REFUSED = "capture_refused"
NOT_CAPTURED = frozenset({UNCAPTURED, CAPTURE_REFUSED})
# Money an admin may still act on (its confirmation is parked).
ACTIONABLE = frozenset({LATE, PARKED, REFUND_PENDING}) | NOT_CAPTURED


@dataclass(frozen=True)
class Product:
    sku: str
    unit_amount: int
    currency: str
    total: int


@dataclass
class OrderModel:
    id: str
    provider: str
    sku: str
    amount: int
    currency: str
    expires_at: float  # epoch seconds
    intent: str  # the latest attempt's intent id
    statuses: set[str] = field(default_factory=lambda: {"awaiting_payment"})
    attempt_pending: set[bool] = field(default_factory=lambda: {True})
    money: set[str] = field(default_factory=set)  # txs of its own amount that may pay it
    spent_intents: set[str] = field(default_factory=set)  # Stripe: an intent is one tx
    # Issue 28 (`tests.integrity.vendor_rules`): an order of the vendor's product, which
    # waits for the vendor's acceptance once paid: where that stands (None: not paid), and
    # when its window ends (epoch seconds, as last read).
    vendor: bool = False
    fulfilment: set[str | None] = field(default_factory=lambda: {None})
    accept_by: float | None = None

    def left(self, now: float | None = None) -> float:
        return self.expires_at - (time.time() if now is None else now)

    @property
    def status(self) -> str | None:
        """The status, if the model knows it."""
        return next(iter(self.statuses)) if len(self.statuses) == 1 else None

    def as_order(self, amount: int | None = None) -> dict[str, object]:
        """The order as the signed-request helpers read it."""
        return {
            "payment": {"intent_id": self.intent},
            "amount": self.amount if amount is None else amount,
            "currency": self.currency,
        }


@dataclass
class Money:
    """One confirmation the gateway sent (or a checkout return): money that came in."""

    provider: str
    tx: str
    amount: int
    currency: str
    kind: str  # "match" | "mismatch" | "unmatched" | "authorization"
    order_id: str | None  # the order whose intent it names, if any
    fates: set[str]
    request: Request | None = None  # the webhook, to send again as a duplicate
    attached_to: str | None = None  # the order an admin attached it to
    was_late: bool = False  # stored for a cancelled order (its refund settles it as late)
    # The refund row of this transaction: None (none), "pending", "succeeded" ("failed" is
    # not driven here); a set where timing decides.
    refund: set[str | None] = field(default_factory=lambda: {None})
    was_captured: bool = False  # an authorization Razorpay reports captured

    @property
    def fate(self) -> str | None:
        return next(iter(self.fates)) if len(self.fates) == 1 else None


@dataclass
class Model:
    products: dict[str, Product] = field(default_factory=dict)
    orders: dict[str, OrderModel] = field(default_factory=dict)
    money: dict[tuple[str, str], Money] = field(default_factory=dict)

    def held(self, sku: str) -> set[int]:
        """How many units of `sku` live orders may hold (a set where statuses are open)."""
        low = sum(1 for o in self.orders.values() if o.sku == sku and o.statuses <= LIVE)
        high = sum(1 for o in self.orders.values() if o.sku == sku and o.statuses & LIVE)
        return set(range(low, high + 1))

    def available(self, sku: str) -> set[int]:
        return {self.products[sku].total - h for h in self.held(sku)}

    def stored_money(self, order_id: str) -> list[Money]:
        """Money that was (or may have been) stored against this order: applied or late (late
        money stays stored when an admin settles it: resolved, or its refund asked for).
        Money an admin attached is stored on the order it was attached to, not on the one
        whose intent it named (`pay > checkout_return > admin_attach > refund`, seed
        66868417: the model counted it twice)."""
        return [
            m
            for m in self.money.values()
            if (m.was_late or m.fates & {APPLIED, APPLIED_REFUNDED, LATE, LATE_REFUNDED})
            and (m.attached_to or m.order_id) == order_id
        ]

    def stored_on(self, order_id: str) -> bool:
        return bool(self.stored_money(order_id))

    def money_on(self, order_id: str) -> list[Money]:
        return [m for m in self.money.values() if m.order_id == order_id]


def payment_fates(order: OrderModel, model: Model, delay: float = 0.0) -> tuple[set[str], bool]:
    """Fates of money of the order's own amount sent now for `order`, and whether the order
    may be paid by it. `delay`: how long the stack may take to act on it (a fault)."""
    status = order.status
    near = order.left() < NEAR_SECONDS + delay
    if status == "awaiting_payment":
        if model.stored_on(order.id):
            return {PARKED}, False  # its attempt holds money already
        return ({APPLIED, LATE} if near else {APPLIED}), True
    if status == "cancelled":
        # Stored first, then parked as late; but a second late payment finds the attempt
        # paid by the first, and is parked as already paid.
        return ({PARKED} if model.stored_on(order.id) else {LATE}), False
    if status in ("paid", "refunded"):
        return {PARKED}, False
    return {APPLIED, LATE, PARKED}, True


def authorization_fates(fates: set[str]) -> set[str]:
    """What an authorization becomes where money with `fates` would (`payment_fates`): it is
    captured and applied only where the money would be applied; where it would be parked or
    late it is left uncaptured; the window closing before its check leaves it uncaptured,
    closing after its capture makes it late."""
    out = fates & {APPLIED}
    if {APPLIED, LATE} <= fates:
        out.add(LATE)
    if fates != {APPLIED}:
        out.add(UNCAPTURED)
    return out


def refused_fates(fates: set[str]) -> set[str]:
    """An authorization whose capture the gateway refuses: where it would be captured, the
    refusal is parked; elsewhere it is left uncaptured (no capture is asked)."""
    out = {CAPTURE_REFUSED} if APPLIED in fates else set()
    if fates != {APPLIED}:
        out.add(UNCAPTURED)
    return out
