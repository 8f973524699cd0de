"""The integrity campaign's vendor side (issue 28): orders of a vendor's product that needs
acceptance, accepted or rejected by the vendor, or left until their window ends; and what
must hold of them after every step.

A mixin of `IntegrityMachine` (`tests.integrity.test_integrity`), which calls the hooks
below from its comparison. The model keeps, per vendor order, the set of fulfilments it may
have (`OrderModel.fulfilment`): a payment makes it `pending_vendor_acceptance`, a vendor's
answer `accepted` or `rejected`, and time `rejected` (`timeout`) once `accept_by` has
passed. The quiet wait before each comparison polls the acceptance window once, as the
window keeper does every half second (`activities.fulfilment.AcceptanceWindow`, a `Window`
of `activities.windows`), so the campaign's outcome is the same whether a keeper runs it or
not: an order pending when that poll began and past its window must be rejected by the
comparison, its full refund asked if it was still paid.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from hypothesis import strategies as st
from hypothesis.stateful import rule
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from activities.fulfilment import AcceptanceWindow
from api.auth import make_token
from db.models import Order, Payment
from domain.confirmation import ConfirmationState, Phase
from tests.integrity.conftest import ACCEPT_SECONDS
from tests.integrity.model import (
    APPLIED,
    NEAR_SECONDS,
    PROVIDERS,
    Model,
    Money,
    OrderModel,
)
from tests.integrity.model import (
    Product as ProductModel,
)
from tests.support.fault_stack import FaultStack
from tests.support.signing import SECRETS

T = TypeVar("T")

PENDING, ACCEPTED, REJECTED = "pending_vendor_acceptance", "accepted", "rejected"
VENDOR = "acme"


def vendor(sub: str = VENDOR) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(SECRETS['jwt'], sub, vendor=True)}"}


def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(SECRETS['jwt'], 'ops', admin=True)}"}


async def waits_for_vendor(s: AsyncSession, provider: str, transaction_id: str) -> bool:
    """Whether the confirmation `payment-{provider}-{transaction_id}` waits for a vendor (its
    order is pending acceptance): a timer of its own, no case needed."""
    found = await s.scalar(
        select(Order.fulfilment)
        .join(Payment, Payment.order_id == Order.id)
        .where(Payment.provider == provider, Payment.transaction_id == transaction_id)
    )
    return bool(found == PENDING)


def vendor_journal(view: dict[str, Any], events: Counter[str], audit: Counter[str]) -> list[str]:
    """Each of the order's acceptance transitions has its event and its audit entry."""
    f, oid = view["fulfilment"], view["id"]
    p = []
    for kind, want in (("VendorAccepted", f == ACCEPTED), ("VendorRejected", f == REJECTED)):
        if events[kind] != int(want):
            p.append(f"order {oid} ({f}): {events[kind]} {kind} events, want {int(want)}")
    transitions = int(f is not None) + int(f in (ACCEPTED, REJECTED))
    if audit["order.fulfilment_changed"] != transitions:
        p.append(f"order {oid} ({f}): {audit['order.fulfilment_changed']} fulfilment audits")
    return p


class VendorRules:
    # What `IntegrityMachine` has.
    m: Model
    s: FaultStack
    _read_from: float
    # When the quiet wait's last poll of the acceptance window began (epoch seconds).
    _vendor_polled: float = 0.0

    if TYPE_CHECKING:

        def step(self, name: str, coro: Coroutine[Any, Any, None]) -> None: ...
        def skip(self, name: str) -> None: ...
        def orders(self, predicate: Callable[[OrderModel], bool] = ...) -> list[OrderModel]: ...
        async def call(
            self,
            method: str,
            path: str,
            headers: dict[str, str],
            json_body: Any = None,
            limit: float = 60,
        ) -> httpx.Response: ...
        async def read(self, what: Callable[[], Awaitable[T]], limit: float = 60) -> T: ...
        async def _create_order(
            self, provider: str, sku_i: int, sku: str | None = None
        ) -> None: ...

    # -- rules ---------------------------------------------------------------------------

    @rule(provider=st.sampled_from(PROVIDERS))
    def vendor_order(self, provider: str) -> None:
        self.step(f"vendor_order:{provider}", self._vendor_order(provider))

    async def _vendor_order(self, provider: str) -> None:
        """An order of the vendor's product (made on first use: the other products keep
        their places among the skus)."""
        sku = next((k for k in self.m.products if k.startswith("VND-")), None)
        if sku is None:
            sku = f"VND-{uuid.uuid4().hex[:8]}"
            body = {
                "sku": sku,
                "name": "Dinner for two",
                "unit_amount": 49900,
                "currency": "INR",
                "stock": 2,
                "vendor": VENDOR,
                "requires_acceptance": True,
            }
            created = await self.call("POST", "/admin/products", admin(), body)
            assert created.status_code == 201, created.text
            self.m.products[sku] = ProductModel(sku, 49900, "INR", 2)
        before = set(self.m.orders)
        await self._create_order(provider, 0, sku=sku)
        for order_id in set(self.m.orders) - before:
            self.m.orders[order_id].vendor = True

    def _vendor_orders(self, fulfilment: str | None = None) -> list[OrderModel]:
        return self.orders(
            lambda o: o.vendor and (fulfilment is None or fulfilment in o.fulfilment)
        )

    @rule(i=st.integers(0, 50), as_admin=st.booleans())
    def vendor_accepts(self, i: int, as_admin: bool) -> None:
        o = _pick(self._vendor_orders(), i)
        if o is None:
            return self.skip("vendor_accepts")
        self.step("vendor_accepts", self._answer(o, "accept", as_admin))

    @rule(i=st.integers(0, 50))
    def vendor_rejects(self, i: int) -> None:
        o = _pick(self._vendor_orders(), i)
        if o is None:
            return self.skip("vendor_rejects")
        self.step("vendor_rejects", self._answer(o, "reject", False))

    async def _answer(self, o: OrderModel, action: str, as_admin: bool) -> None:
        """The vendor (or an admin) answers; another vendor is told no such order."""
        path, body = f"/vendor/orders/{o.id}/{action}", {"reason": "kitchen closed"}
        other = await self.call("POST", path, vendor("globex"), body)
        assert other.status_code == 404, f"another vendor {action}: {other.text}"
        answer = await self.call("POST", path, admin() if as_admin else vendor(), body)
        ok = 200 if action == "accept" else 202
        may = o.fulfilment == {PENDING} and (action == "reject" or o.statuses == {"paid"})
        near = o.accept_by is None or o.accept_by - time.time() < NEAR_SECONDS
        if may and not near:
            assert answer.status_code == ok, f"{action} of a pending order: {answer.text}"
        elif PENDING not in o.fulfilment or (action == "accept" and "paid" not in o.statuses):
            assert answer.status_code == 409, f"{action} of {o.fulfilment}: {answer.text}"
        else:
            assert answer.status_code in (ok, 409), answer.text
        if answer.status_code != ok:
            return
        view = answer.json()
        o.fulfilment = {ACCEPTED if action == "accept" else REJECTED}
        assert view["fulfilment"] in o.fulfilment, answer.text
        if action == "reject" and view["status"] == "paid":
            # Its full refund asked for (pending until the gateway's notice).
            assert view["refund"] and view["refund"]["amount"] == o.amount, answer.text
            self._refund_asked(o)

    @rule(i=st.integers(0, 50))
    def vendor_window_ends(self, i: int) -> None:
        o = _pick([o for o in self._vendor_orders(PENDING) if o.accept_by is not None], i)
        if o is None:
            return self.skip("vendor_window_ends")
        self.step("vendor_window_ends", self._vendor_window_ends(o))

    async def _vendor_window_ends(self, o: OrderModel) -> None:
        """Nobody answers: the wait until the window has ended (the check's poll closes it,
        and the comparison requires it rejected)."""
        assert o.accept_by is not None
        await asyncio.sleep(min(max(0.0, o.accept_by - time.time() + 0.2), ACCEPT_SECONDS + 1))

    def _refund_asked(self, o: OrderModel) -> None:
        for money in self.m.money.values():
            if (money.attached_to or money.order_id) == o.id and APPLIED in money.fates:
                if money.refund <= {None}:
                    money.refund = money.refund | {"pending"}

    # -- hooks of the comparison -----------------------------------------------------------

    async def _waits_quietly(self, state: ConfirmationState, m: Money) -> bool:
        """A confirmation with nothing to do but wait for its order's vendor (a timer at
        the window's end), the order still pending: quiet. One told of an answer, or whose
        order was answered and is yet to be told, is in motion."""
        if state.phase != Phase.VENDOR or state.fulfilment is not None:
            return False
        if state.pending_requests or state.stuck or state.pending_audit:
            return False

        async def pending() -> bool:
            async with self.s.sessions() as s:
                return await waits_for_vendor(s, m.provider, m.tx)

        return await self.read(pending)

    async def _vendor_busy(self) -> list[str]:
        """The acceptance window polled once (closes waited for), then whatever is pending
        at or near its window's end is still in motion."""
        ids = [uuid.UUID(o.id) for o in self.m.orders.values() if o.vendor]
        if not ids:
            return []
        polled = time.time()
        window = AcceptanceWindow(self.s.sessions, self.s.client, self.s.settings.task_queue)
        await window.close_due()
        await window.drain()
        async with self.s.sessions() as s:
            rows = await s.execute(
                select(Order.id, Order.accept_by).where(
                    Order.id.in_(ids), Order.fulfilment == PENDING
                )
            )
            ending = [i for i, by in rows if by is None or by.timestamp() < time.time() + 1.0]
        if not ending:
            self._vendor_polled = polled
        return [f"order {i} at its acceptance window's end" for i in ending]

    def _vendor_windows_closed(self, views: dict[str, dict[str, Any]]) -> None:
        """What payment and time did to each vendor order's fulfilment, before the money is
        compared (a rejection by the window asks for its refund)."""
        for o in self._vendor_orders():
            view = views[o.id]
            if view["accept_by"] is not None:
                o.accept_by = _epoch(view["accept_by"])
            allowed = set(o.fulfilment)
            if view["status"] in ("paid", "refunded") and None in allowed:
                allowed = (allowed - {None}) | {PENDING}  # paid since: waits for the vendor
            if PENDING in allowed and o.accept_by is not None:
                if o.accept_by <= self._vendor_polled:
                    allowed = (allowed - {PENDING}) | {REJECTED}
                elif o.accept_by <= time.time():
                    allowed.add(REJECTED)
            if REJECTED in allowed - o.fulfilment and view["status"] == "paid":
                self._refund_asked(o)
            o.fulfilment = allowed

    def _compare_fulfilment(self, o: OrderModel, view: dict[str, Any]) -> list[str]:
        f, p = view["fulfilment"], []
        if not o.vendor:
            return [f"order {o.id} needs no acceptance, is {f}"] if f is not None else []
        if f not in o.fulfilment:
            p.append(f"order {o.id} ({view['status']}): {f}, model allows {o.fulfilment}")
        if f is not None and view["status"] not in ("paid", "refunded"):
            p.append(f"order {o.id} ({view['status']}) is {f}")
        if f in (PENDING, REJECTED) and view["ticket"] is not None:
            p.append(f"order {o.id} ({f}) has a ticket")
        if f == REJECTED and not view["reject_reason"]:
            p.append(f"order {o.id} rejected without a reason")
        if f == PENDING and o.accept_by is not None and o.accept_by + 1.0 < self._read_from:
            p.append(f"order {o.id} pending past its acceptance window")
        o.fulfilment = {f}
        return p


def _pick(items: list[T], i: int) -> T | None:
    return items[i % len(items)] if items else None


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()
