"""Issue 12: financial integrity under any interleaving, as a hypothesis state machine
against the real stack (API in-process, worker subprocess, Temporal dev server, embedded
PostgreSQL), with faults: PostgreSQL stopped and started, the worker killed and restarted.

Every step is followed by a wait until the stack is quiet (no confirmation, refund or order
lifecycle in the middle of something), then the model (`tests.integrity.model`) is compared
with what the API and the database show, and `paysaga admin check` must find nothing.

`make test` runs a bounded campaign; `make integrity SHARDS=K RUNS=N MINUTES=M` a long one
in K processes (`tests.integrity.campaign`), each of up to N examples and M minutes, which
sets this module's `PAYSAGA_INTEGRITY_EXAMPLES`, `_STEPS`, `_MINUTES`, `_SEED` and `_REPORT`.
A failure prints the seed and hypothesis's shortest sequence of steps; figures go to
`build/integrity-report.json` (`PAYSAGA_INTEGRITY_REPORT`).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError, InterfaceError
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from db.invariants import check_invariants
from db.models import AuditEntry, Event, Order, Payment, Product, ReconciliationCase, Refund
from domain.payments import (
    ATTACHED,
    confirmation_workflow_id,
    refund_workflow_id,
)
from tests.integrity.conftest import KEY_SECRET, WINDOW_SECONDS
from tests.integrity.model import (
    ACTIONABLE,
    APPLIED,
    APPLIED_REFUNDED,
    CAPTURE_REFUSED,
    GRACE_SECONDS,
    LATE,
    LATE_REFUNDED,
    LIVE,
    NEAR_SECONDS,
    NOT_CAPTURED,
    PARKED,
    PROVIDERS,
    REFUND_PENDING,
    REFUNDED,
    RESOLVED,
    UNCAPTURED,
    Model,
    Money,
    OrderModel,
    authorization_fates,
    payment_fates,
    refused_fates,
)
from tests.integrity.model import (
    Product as ProductModel,
)
from tests.integrity.vendor_rules import VendorRules, vendor_journal, waits_for_vendor
from tests.support.fault_stack import FaultStack, open_stack
from tests.support.gateway_events import failed, refund_notice, signed_confirmation
from tests.support.razorpay_server import RazorpayApiServer
from tests.support.signing import (
    SECRETS,
    Request,
    checkout_return,
    razorpay_payment_event,
    razorpay_request,
)
from workflows.payment_confirmation import ConfirmPaymentWorkflow

T = TypeVar("T")

EXAMPLES = int(os.environ.get("PAYSAGA_INTEGRITY_EXAMPLES", "8"))
STEPS = int(os.environ.get("PAYSAGA_INTEGRITY_STEPS", "12"))
# A long campaign may be bounded by time instead: once MINUTES have passed, the next example
# ends the campaign (`CampaignOver`).
MINUTES = float(os.environ.get("PAYSAGA_INTEGRITY_MINUTES", "0"))
REPORT = Path(os.environ.get("PAYSAGA_INTEGRITY_REPORT", "build/integrity-report.json"))
QUIET_CAP = 120.0  # seconds the stack may take to become quiet after a step
# How long a fault may hold an action back: money sent during one may race the window.
FAULT_DELAY = 10.0
DB_ERRORS = (DBAPIError, InterfaceError, OSError)
FAULTS = {"postgres_outage": "postgres_stopped", "worker_killed": "worker_killed"}
NOT_CAPTURED_CASES = {"authorization_uncaptured", "capture_refused"}


class CampaignOver(KeyboardInterrupt):
    """Raised by the first example past the campaign's time bound. An interrupt is the one
    exception hypothesis lets through as it is (another BaseException it replays, and finds
    flaky); examples that merely did nothing would take about 13 ms each, 20 minutes for
    100,000. Hypothesis prints its "reproduce" line on the way out, as on any interrupt."""


@dataclass
class Campaign:
    """What the campaign did, for the report: steps, faults, distinct step sequences."""

    seed: int = 0
    deadline: float = float("inf")  # time.monotonic() past which the campaign is over
    examples: int = 0
    steps: int = 0
    checks: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    sequences: set[tuple[str, ...]] = field(default_factory=set)
    skipped: Counter[str] = field(default_factory=Counter)  # rules with nothing to act on
    # Where the time goes: each rule's own run, and the three parts of the check after it.
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    # Every failure seen, before shrinking (a shrink can end in hypothesis's own error).
    failures: list[str] = field(default_factory=list)

    started: float = field(default_factory=time.monotonic)

    def over(self) -> bool:
        return time.monotonic() > self.deadline

    def report(self, result: str) -> dict[str, Any]:
        """The figures, written to REPORT (`result`: running, passed or failed)."""
        figures = self.figures() | {
            "result": result,
            "wall_seconds": round(time.monotonic() - self.started, 1),
            "window_seconds": WINDOW_SECONDS,
        }
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(json.dumps(figures, indent=2) + "\n")
        return figures

    def figures(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "examples": self.examples,
            "steps": self.steps,
            "skips": sum(self.skipped.values()),
            "checks": self.checks,
            "faults": dict(self.faults),
            "faults_total": sum(self.faults.values()),
            "distinct_sequences": len(self.sequences),
            # The sequences themselves, so shards of one campaign can be merged.
            "sequences": sorted(" > ".join(x) for x in self.sequences),
            "rules": dict(sorted(self.rules.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "seconds": {k: round(v, 1) for k, v in sorted(self.seconds.items())},
            "failures": self.failures[:20],
        }


class World:
    """The stack on its own event loop, entered once and shared by every example."""

    def __init__(
        self, runner: asyncio.Runner, stack: FaultStack, razorpay: RazorpayApiServer
    ) -> None:
        self.runner = runner
        self.stack = stack
        self.razorpay = razorpay  # Razorpay's side: the payments the campaign makes there

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)


def admin() -> dict[str, str]:
    from api.auth import make_token

    return {"Authorization": f"Bearer {make_token(SECRETS['jwt'], 'ops', admin=True)}"}


def owner() -> dict[str, str]:
    from api.auth import make_token

    return {"Authorization": f"Bearer {make_token(SECRETS['jwt'], 'alice')}"}


def new_tx(provider: str) -> str:
    prefix = {"razorpay": "pay_", "stripe": "pi_", "standard": "txn_"}[provider]
    return f"{prefix}I{uuid.uuid4().hex[:14]}"


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def pick(items: list[T], i: int) -> T | None:
    """The i-th candidate (cyclically), None if there is none. The rules have no
    preconditions: whether a rule is enabled would depend on timing (a window closing),
    and hypothesis needs the same draws to give the same steps; a rule with nothing to act
    on is a skipped step instead."""
    return items[i % len(items)] if items else None


class IntegrityMachine(VendorRules, RuleBasedStateMachine):
    world: ClassVar[World]
    campaign: ClassVar[Campaign]
    CASE_PAGE: ClassVar[int] = 500  # the API's largest page of open cases

    def __init__(self) -> None:
        super().__init__()
        self.m = Model()
        self._read_from = 0.0  # when the last comparison began reading the orders
        self.sequence: list[str] = []
        self._acted = True  # whether anything ran since the last check
        self._completed: set[str] = set()  # workflows seen completed (`_status`)
        # Past the campaign's time bound, a new example ends it (one under way ran to its
        # end, checked). Not once a failure was seen: hypothesis is shrinking it then.
        if self.campaign.over() and not self.campaign.failures:
            raise CampaignOver
        self._last = "products"  # the rule that ran last (the quiet wait is charged to it)
        self.s = self.world.stack
        self.http = self.s.http

    # -- plumbing ------------------------------------------------------------------------

    def step(self, name: str, coro: Coroutine[Any, Any, None]) -> None:
        self._acted = True
        self._last = name.split(":")[0]
        if name in FAULTS:
            self.campaign.faults[FAULTS[name]] += 1
        self.sequence.append(name)
        self.campaign.steps += 1
        self.campaign.rules[name] += 1
        started = time.monotonic()
        try:
            self.world.run(coro)
        except AssertionError as exc:
            self.campaign.failures.append(f"{' > '.join(self.sequence)}: {exc}"[:4000])
            raise
        finally:
            self.campaign.seconds[f"rule:{name.split(':')[0]}"] += time.monotonic() - started

    def skip(self, name: str) -> None:
        """A rule drawn with nothing to act on (no order yet, no parked money)."""
        self.campaign.skipped[name] += 1

    def teardown(self) -> None:
        self.campaign.examples += 1
        self.campaign.sequences.add(tuple(self.sequence))
        if self.campaign.examples % 10 == 0:
            self.campaign.report("running")  # a long campaign's progress, readable meanwhile

    async def deliver(self, path: str, request: Request, limit: float = 90) -> dict[str, Any]:
        """As a gateway delivers: retried on 503 (and refused connections) until taken."""
        deadline = time.monotonic() + limit
        while True:
            try:
                response = await self.http.post(path, content=request[0], headers=request[1])
            except (httpx.TransportError, OSError):
                pass
            else:
                if response.status_code == 200:
                    body: dict[str, Any] = response.json()
                    return body
                assert response.status_code == 503, (
                    f"{path}: {response.status_code} {response.text}"
                )
            assert time.monotonic() < deadline, f"{path}: not taken within {limit:.0f} s"
            await asyncio.sleep(0.3)

    async def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        json_body: Any = None,
        limit: float = 60,
    ) -> httpx.Response:
        """An API call by a person: retried while the API answers 503 (a fault healing)."""
        deadline = time.monotonic() + limit
        while True:
            try:
                response = await self.http.request(method, path, json=json_body, headers=headers)
            except (httpx.TransportError, OSError):
                response = None
            if response is not None and response.status_code != 503:
                return response
            assert time.monotonic() < deadline, f"{method} {path}: unavailable for {limit:.0f} s"
            await asyncio.sleep(0.3)

    async def read(self, what: Callable[[], Awaitable[T]], limit: float = 60) -> T:
        """A database read, retried while the database (or the pool) recovers."""
        deadline = time.monotonic() + limit
        while True:
            try:
                return await what()
            except DB_ERRORS:
                assert time.monotonic() < deadline, "database unreadable"
                await asyncio.sleep(0.3)

    def orders(self, predicate: Callable[[OrderModel], bool] = lambda o: True) -> list[OrderModel]:
        return [o for o in self.m.orders.values() if predicate(o)]

    # -- setup ---------------------------------------------------------------------------

    @initialize(
        first=st.lists(
            st.tuples(st.sampled_from(PROVIDERS), st.integers(0, 1)), min_size=1, max_size=2
        )
    )
    def products(self, first: list[tuple[str, int]]) -> None:
        """Two products, then the first orders: a rule drawn with no order to act on is a
        step that does nothing, and most were, before these."""

        async def create() -> None:
            for currency, amount in (("INR", 49900), ("EUR", 4900)):
                sku = f"INT-{uuid.uuid4().hex[:8]}"
                body = {
                    "sku": sku,
                    "name": "Integrity pass",
                    "unit_amount": amount,
                    "currency": currency,
                    "stock": 2,
                }
                created = await self.call("POST", "/admin/products", admin(), body)
                assert created.status_code == 201, created.text
                self.m.products[sku] = ProductModel(sku, amount, currency, 2)

        self.world.run(create())
        for provider, sku_i in first:
            self.step(f"create_order:{provider}", self._create_order(provider, sku_i))

    # -- customers ------------------------------------------------------------------------

    @rule(provider=st.sampled_from(PROVIDERS), sku_i=st.integers(0, 1))
    def create_order(self, provider: str, sku_i: int) -> None:
        self.step(f"create_order:{provider}", self._create_order(provider, sku_i))

    async def _create_order(self, provider: str, sku_i: int, sku: str | None = None) -> None:
        sku = sku or sorted(self.m.products)[sku_i]  # two products, made first
        available = self.m.available(sku)
        body = {"items": [{"sku": sku, "quantity": 1}], "provider": provider}
        created = await self.call("POST", "/orders", owner(), body)
        if created.status_code == 409:
            assert min(available) <= 0, (
                f"{sku} refused with {available} model stock: {created.text}"
            )
            assert created.json()["unavailable"] == [sku]
            return
        assert created.status_code == 201, created.text
        assert max(available) > 0, f"{sku} sold beyond its stock (model: {available} left)"
        order = created.json()
        product = self.m.products[sku]
        assert (order["amount"], order["currency"]) == (product.unit_amount, product.currency)
        assert order["status"] == "awaiting_payment" and order["payment"]["status"] == "pending"
        self.m.orders[order["id"]] = OrderModel(
            order["id"],
            provider,
            sku,
            order["amount"],
            order["currency"],
            epoch(order["expires_at"]),
            order["payment"]["intent_id"],
        )

    @rule(i=st.integers(0, 50))
    def pay(self, i: int) -> None:
        o = pick(self.orders(), i)
        if o is None:
            return self.skip("pay")
        self.step("pay", self._pay(o))

    async def _pay(self, o: OrderModel, delay: float = 0.0) -> None:
        """The gateway confirms the order's latest attempt, for its own amount."""
        tx = o.intent if o.provider == "stripe" else new_tx(o.provider)
        request = signed_confirmation(o.provider, o.as_order(), tx)
        self._at_razorpay(o.provider, tx, o.amount, o.currency)
        if (o.provider, tx) in self.m.money:  # a Stripe intent is one transaction
            answer = await self.deliver(f"/webhooks/{o.provider}", request)
            assert answer == {"result": "duplicate"}, f"intent {tx} confirmed twice: {answer}"
            return
        fates, may_pay = payment_fates(o, self.m, delay)
        self._expect_money(o, tx, fates, may_pay, request)
        answer = await self.deliver(f"/webhooks/{o.provider}", request)
        assert answer == {"result": "accepted"}, answer

    def _expect_money(
        self,
        o: OrderModel,
        tx: str,
        fates: set[str],
        may_pay: bool,
        request: Request | None,
    ) -> Money:
        money = Money(o.provider, tx, o.amount, o.currency, "match", o.id, fates, request)
        # A late payment's own refund starts by itself, recorded as pending (offline: until
        # the gateway's notice); the comparison requires that of every late payment.
        money.refund = {None, "pending"} if LATE in fates else {None}
        self.m.money[(o.provider, tx)] = money
        if may_pay:
            o.money.add(tx)
            if fates == {APPLIED}:
                o.statuses = {"paid"}
            elif APPLIED in fates:
                o.statuses = {"paid", "cancelled"}
            o.attempt_pending = {False}
        return money

    @rule(i=st.integers(0, 50))
    def checkout_return(self, i: int) -> None:
        o = pick(self.orders(lambda o: o.provider == "razorpay"), i)
        if o is None:
            return self.skip("checkout_return")
        self.step("checkout_return", self._checkout_return(o))

    async def _checkout_return(self, o: OrderModel) -> None:
        """The browser returns from Razorpay's checkout with its signed proof."""
        tx = new_tx("razorpay")
        fates, may_pay = payment_fates(o, self.m, delay=3.0)  # the answer waits up to 3 s
        self._expect_money(o, tx, fates, may_pay, None)
        # Paid at Razorpay's checkout (captured): the return is looked up there.
        self.world.razorpay.add_payment(o.intent, True, o.amount, o.currency, tx)
        proof = checkout_return(o.as_order(), tx, KEY_SECRET)
        answer = await self.call("POST", "/payments/razorpay/verify", owner(), proof)
        assert answer.status_code in (200, 202), answer.text
        if answer.status_code == 200:
            assert answer.json()["status"] == "paid", answer.text
            assert "paid" in o.statuses or APPLIED in fates, "a return answered paid wrongly"
        else:
            assert answer.json()["status"] == "processing", answer.text
        # Its webhook follows and is the same payment.
        self.m.money[("razorpay", tx)].request = signed_confirmation("razorpay", o.as_order(), tx)

    def _at_razorpay(self, provider: str, tx: str, amount: int, currency: str) -> None:
        """Money a webhook reports is money Razorpay holds (online, its refunds are asked
        there): captured, under no order it lists, so the look-up before a window closes
        does not find it (the webhook is what the campaign draws)."""
        if provider == "razorpay":
            self.world.razorpay.add_payment(None, True, amount, currency, tx)

    @rule(i=st.integers(0, 50))
    def authorize_only(self, i: int) -> None:
        o = pick(self.orders(lambda o: o.provider == "razorpay"), i)
        if o is None:
            return self.skip("authorize_only")
        self.step("authorize_only", self._authorize(o, refused=False))

    @rule(i=st.integers(0, 50))
    def capture_refused(self, i: int) -> None:
        o = pick(self.orders(lambda o: o.provider == "razorpay"), i)
        if o is None:
            return self.skip("capture_refused")
        self.step("capture_refused", self._authorize(o, refused=True))

    async def _authorize(self, o: OrderModel, refused: bool) -> None:
        """The customer pays on an account with manual capture: Razorpay holds an
        authorization and says `payment.authorized`; paysaga captures it only for an order
        that takes it (`refused`: Razorpay refuses that capture)."""
        tx = new_tx("razorpay")
        razorpay = self.world.razorpay
        razorpay.add_payment(o.intent, False, o.amount, o.currency, tx)
        if refused:
            razorpay.refuse_capture_of.add(tx)
        fates, may_pay = payment_fates(o, self.m)
        if refused:
            money = Money("razorpay", tx, o.amount, o.currency, "authorization", o.id, set())
            money.fates = refused_fates(fates)
            self.m.money[("razorpay", tx)] = money
        else:
            money = self._expect_money(o, tx, authorization_fates(fates), may_pay, None)
            money.kind = "authorization"
        event = razorpay_payment_event(o.intent, tx, o.amount, o.currency, "payment.authorized")
        event["payload"]["payment"]["entity"] |= {"status": "authorized", "captured": False}
        money.request = razorpay_request(event)
        answer = await self.deliver("/webhooks/razorpay", money.request)
        assert answer == {"result": "accepted"}, answer

    @rule(i=st.integers(0, 50))
    def duplicate(self, i: int) -> None:
        money = pick([m for m in self.m.money.values() if m.request is not None], i)
        if money is None:
            return self.skip("duplicate")
        self.step("duplicate", self._duplicate(money))

    async def _duplicate(self, money: Money) -> None:
        assert money.request is not None
        answer = await self.deliver(f"/webhooks/{money.provider}", money.request)
        assert answer == {"result": "duplicate"}, f"{money.tx} sent again: {answer}"

    @rule(i=st.integers(0, 50))
    def payment_fails(self, i: int) -> None:
        o = pick(self.orders(), i)
        if o is None:
            return self.skip("payment_fails")
        self.step("payment_fails", self._payment_fails(o))

    async def _payment_fails(self, o: OrderModel) -> None:
        answer = await self.deliver(f"/webhooks/{o.provider}", failed(o.provider, o.as_order()))
        acts = o.status == "awaiting_payment" and o.attempt_pending == {True}
        if acts and o.left() > NEAR_SECONDS:
            assert answer == {"result": "accepted"}, answer
        elif o.status != "awaiting_payment" or o.attempt_pending == {False}:
            assert answer == {"result": "ignored"}, f"failure of a finished attempt: {answer}"
        else:
            assert answer["result"] in ("accepted", "ignored"), answer
        o.attempt_pending = {False} if acts or answer["result"] == "ignored" else {True, False}

    @rule(i=st.integers(0, 50))
    def new_attempt(self, i: int) -> None:
        o = pick(self.orders(), i)
        if o is None:
            return self.skip("new_attempt")
        self.step("new_attempt", self._new_attempt(o))

    async def _new_attempt(self, o: OrderModel) -> None:
        answer = await self.call("POST", f"/orders/{o.id}/payments", owner(), {})
        can = o.status == "awaiting_payment" and o.attempt_pending == {False}
        if can and o.left() > NEAR_SECONDS:
            assert answer.status_code == 201, answer.text
        elif not can:
            assert answer.status_code == 409, answer.text
        else:
            assert answer.status_code in (201, 409), answer.text
        if answer.status_code == 201:
            o.intent = answer.json()["payment"]["intent_id"]
            o.attempt_pending = {True}

    @rule(i=st.integers(0, 50))
    def wrong_amount(self, i: int) -> None:
        o = pick(self.orders(), i)
        if o is None:
            return self.skip("wrong_amount")
        self.step("wrong_amount", self._wrong_amount(o))

    async def _wrong_amount(self, o: OrderModel) -> None:
        tx = o.intent if o.provider == "stripe" else new_tx(o.provider)
        request = signed_confirmation(o.provider, o.as_order(), tx, amount=o.amount + 1)
        self._at_razorpay(o.provider, tx, o.amount + 1, o.currency)
        if (o.provider, tx) in self.m.money:
            answer = await self.deliver(f"/webhooks/{o.provider}", request)
            assert answer == {"result": "duplicate"}, answer
            return
        money = Money(o.provider, tx, o.amount + 1, o.currency, "mismatch", o.id, {PARKED})
        money.request = request
        self.m.money[(o.provider, tx)] = money
        assert (await self.deliver(f"/webhooks/{o.provider}", request)) == {"result": "accepted"}

    @rule(provider=st.sampled_from(PROVIDERS), sku_i=st.integers(0, 1))
    def unmatched(self, provider: str, sku_i: int) -> None:
        self.step(f"unmatched:{provider}", self._unmatched(provider, sku_i))

    async def _unmatched(self, provider: str, sku_i: int) -> None:
        """Money naming no order: of a product's price, so an admin may attach it."""
        product = self.m.products[sorted(self.m.products)[sku_i]]
        intent = {"razorpay": "order_Nx", "stripe": "pi_Nx", "standard": "int_Nx"}[provider]
        intent += uuid.uuid4().hex[:14]
        tx = intent if provider == "stripe" else new_tx(provider)
        order = {
            "payment": {"intent_id": intent},
            "amount": product.unit_amount,
            "currency": product.currency,
        }
        request = signed_confirmation(provider, order, tx)
        self._at_razorpay(provider, tx, product.unit_amount, product.currency)
        money = Money(
            provider, tx, product.unit_amount, product.currency, "unmatched", None, {PARKED}
        )
        money.request = request
        self.m.money[(provider, tx)] = money
        assert (await self.deliver(f"/webhooks/{provider}", request)) == {"result": "accepted"}

    @rule(i=st.integers(0, 50), as_admin=st.booleans())
    def cancel(self, i: int, as_admin: bool) -> None:
        o = pick(self.orders(), i)
        if o is None:
            return self.skip("cancel")
        self.step("cancel", self._cancel(o, as_admin))

    async def _cancel(self, o: OrderModel, as_admin: bool) -> None:
        answer = await self.call("POST", f"/orders/{o.id}/cancel", admin() if as_admin else owner())
        if o.status in ("awaiting_payment", "cancelled"):
            assert answer.status_code == 200, answer.text
            assert answer.json()["status"] == "cancelled"
            o.statuses, o.attempt_pending = {"cancelled"}, {False}
        elif o.status in ("paid", "refunded"):
            assert answer.status_code == 409, answer.text
        else:
            assert answer.status_code in (200, 409), answer.text

    @rule(i=st.integers(0, 50))
    def window_ends(self, i: int) -> None:
        o = pick(self.orders(lambda o: o.status == "awaiting_payment"), i)
        if o is None:
            return self.skip("window_ends")
        self.step("window_ends", self._window_ends(o))

    async def _window_ends(self, o: OrderModel) -> None:
        """Nobody pays: the wait until the window has closed (the check awaits the cancel)."""
        await asyncio.sleep(min(max(0.0, o.left() + 0.2), WINDOW_SECONDS + 1))
        o.statuses, o.attempt_pending = {"cancelled"}, {False}

    @rule(i=st.integers(0, 50), as_admin=st.booleans())
    def refund(self, i: int, as_admin: bool) -> None:
        o = pick(self.orders(), i)
        if o is None:
            return self.skip("refund")
        self.step("refund", self._refund(o, as_admin))

    async def _refund(self, o: OrderModel, as_admin: bool) -> None:
        path = f"/orders/{o.id}/refund"
        answer = await self.call("POST", path, admin() if as_admin else owner(), {"reason": "x"})
        stored = self.m.stored_money(o.id)
        existing = [m for m in stored if m.refund & {"pending", "succeeded"}]
        if existing:
            assert len(existing) == 1, f"order {o.id} holds two refunded sums: {existing}"
            assert answer.status_code == 202, answer.text
            assert answer.json()["refund"]["status"] in existing[0].refund, answer.text
        elif o.status == "paid":
            assert answer.status_code == 202, answer.text
            assert answer.json()["refund"]["status"] == "pending", answer.text
            (paid,) = [m for m in stored if m.fates == {APPLIED}]
            paid.refund = {"pending"}
        else:
            assert answer.status_code == 409, f"refund of an order {o.statuses}: {answer.text}"

    @rule(i=st.integers(0, 50))
    def gateway_refunds(self, i: int) -> None:
        candidates = [
            m
            for m in self.m.money.values()
            if m.refund == {"pending"} or m.fates in ({APPLIED}, {LATE})
        ]
        money = pick(candidates, i)
        if money is None:
            return self.skip("gateway_refunds")
        self.step("gateway_refunds", self._gateway_refunds(money))

    async def _gateway_refunds(self, money: Money) -> None:
        """The gateway's refund notice: asked for, or an operator's refund in its dashboard."""
        notice = refund_notice(
            money.provider, {"amount": money.amount, "currency": money.currency}, money.tx
        )
        answer = await self.deliver(f"/webhooks/{money.provider}", notice)
        assert answer == {"result": "accepted"}, answer
        handle = self.s.client.get_workflow_handle(refund_workflow_id(money.provider, money.tx))
        done = await asyncio.wait_for(handle.result(), timeout=90)
        assert done == "succeeded", f"refund of {money.tx}: {done}"
        money.refund = {"succeeded"}
        fate = money.fate
        if fate == APPLIED:
            money.fates = {APPLIED_REFUNDED}
            self.m.orders[money.attached_to or str(money.order_id)].statuses = {"refunded"}
        elif fate == LATE:
            money.fates = {LATE_REFUNDED}
        elif fate == REFUND_PENDING:
            money.fates = {LATE_REFUNDED if money.was_late else REFUNDED}

    # -- operators -----------------------------------------------------------------------

    @rule(
        i=st.integers(0, 50),
        action=st.sampled_from(["retry", "attach", "refund", "resolve"]),
        j=st.integers(0, 50),
    )
    def admin_acts(self, i: int, action: str, j: int) -> None:
        money = pick([m for m in self.m.money.values() if m.fates <= ACTIONABLE], i)
        if money is None:
            return self.skip("admin_acts")
        target = pick(self.orders(), j)
        self.step(f"admin_{action}", self._admin_acts(money, action, target))

    async def _open_cases(self, tx: str) -> list[dict[str, Any]]:
        """The money's open cases as an admin finds them: every page of the list, oldest
        first. (The first page alone ran out once a shard's examples had left over 500 cases
        open: campaign G.)"""
        listed: list[dict[str, Any]] = []
        after = 0
        while True:
            path = f"/admin/reconciliation?limit={self.CASE_PAGE}&after={after}"
            answer = await self.call("GET", path, admin())
            assert answer.status_code == 200, answer.text
            page = answer.json()
            if not page:
                return listed
            listed += [c for c in page if c["transaction_id"] == tx]
            after = page[-1]["id"]

    async def _admin_acts(self, money: Money, action: str, target: OrderModel | None) -> None:
        if action == "attach" and target is None:
            action = "retry"
        body: dict[str, Any] = {"request_id": str(uuid.uuid4())}
        body |= {"order_id": target.id} if action == "attach" and target else {}
        body |= {"reason": "integrity", "note": "integrity"}
        listed = await self._open_cases(money.tx)
        assert listed, f"parked money {money.provider} {money.tx} has no open case listed"
        path = f"/admin/payments/{money.provider}/{money.tx}/{action}"
        answer = await self.call("POST", path, admin(), body)
        if money.fates <= NOT_CAPTURED:
            self._admin_acts_on_authorization(money, action, target, answer)
            return
        refund_asked = money.fate == REFUND_PENDING
        if action in ("attach", "retry") and refund_asked:
            assert answer.status_code == 409, f"{action} after a refund was asked: {answer.text}"
            return
        assert answer.status_code == 202, f"{action} on {money.fates}: {answer.text}"
        assert answer.json()["status"] == "accepted", answer.text
        if action == "resolve":
            money.fates = {RESOLVED}
        elif action == "refund":
            money.fates = {REFUND_PENDING}
            money.refund = {"pending"} if money.refund <= {None, "pending"} else money.refund
        elif action == "attach" and target is not None and money.fate == PARKED:
            money.fates, may_pay = self._attach_fates(money, target)
            if money.fates & {APPLIED, LATE}:
                # Stored on the target: paid with it, or, the target cancelled first, late
                # money, whose own refund starts at once (pending until the gateway's
                # notice), as a late payment's does (`... > admin_attach`, seed 1010388590
                # had the model expect no refund).
                money.attached_to = target.id
            if LATE in money.fates:
                money.refund = money.refund | {"pending"}
            if may_pay:
                target.money.add(money.tx)
                if APPLIED in money.fates:
                    target.statuses = (
                        {"paid"} if money.fates == {APPLIED} else {"paid", "cancelled"}
                    )
                target.attempt_pending = {False}

    def _admin_acts_on_authorization(
        self, money: Money, action: str, target: OrderModel | None, answer: httpx.Response
    ) -> None:
        """An authorization left uncaptured or refused: nothing was captured, so nothing to
        refund; a retry (or an attach) checks it afresh and captures it where it is taken."""
        if action == "refund":
            assert answer.status_code == 409, f"refund of {money.fates}: {answer.text}"
            assert "never captured" in answer.text, answer.text
            return
        assert answer.status_code == 202, f"{action} on {money.fates}: {answer.text}"
        if action == "resolve":
            money.fates = {RESOLVED}
            return
        order = target if action == "attach" and target is not None else None
        order = order or self.m.orders[str(money.order_id)]
        if (money.amount, money.currency) != (order.amount, order.currency):
            money.fates = {UNCAPTURED}
            return
        fates, may_pay = payment_fates(order, self.m)
        money.fates = authorization_fates(fates)
        if money.fates & {APPLIED, LATE}:
            money.attached_to = order.id if action == "attach" else None
        if LATE in money.fates:
            money.refund = money.refund | {"pending"}
        if may_pay:
            order.money.add(money.tx)
            if APPLIED in money.fates:
                order.statuses = {"paid"} if money.fates == {APPLIED} else {"paid", "cancelled"}
            order.attempt_pending = {False}

    def _attach_fates(self, money: Money, target: OrderModel) -> tuple[set[str], bool]:
        if money.kind == "mismatch" or (money.amount, money.currency) != (
            target.amount,
            target.currency,
        ):
            return {PARKED}, False
        return payment_fates(target, self.m)

    # -- faults --------------------------------------------------------------------------

    @rule(i=st.integers(0, 50))
    def postgres_outage(self, i: int) -> None:
        o = pick(self.orders(), i)
        if o is None:
            return self.skip("postgres_outage")
        self.step("postgres_outage", self._postgres_outage(o))

    async def _postgres_outage(self, o: OrderModel) -> None:
        """PostgreSQL stops; the gateway pays meanwhile (Temporal takes it); it starts again."""
        await asyncio.to_thread(self.s.pg.stop)
        paying: asyncio.Task[None] | None = None
        try:
            paying = asyncio.create_task(self._pay(o, delay=FAULT_DELAY))
            await asyncio.sleep(1.5)
        finally:
            await asyncio.to_thread(self.s.pg.start)
        await paying

    @rule(i=st.integers(0, 50), j=st.integers(0, 50), kill=st.sampled_from([False] * 5 + [True]))
    def worker_killed(self, i: int, j: int, kill: bool) -> None:
        """One draw in six kills the worker (shrinking goes towards not killing): what it
        held in flight comes back only once its activity timeout passes (10 to 30 s), and
        its workflows once the server gives up on its sticky queue, which would otherwise be
        most of a campaign (one in four: a shard of 58 kills ran 31 steps a minute)."""
        o, other = pick(self.orders(), i), pick(self.orders(), j)
        if o is None or other is None or not kill:
            return self.skip("worker_killed")
        self.step("worker_killed", self._worker_killed(o, other))

    async def _worker_killed(self, o: OrderModel, other: OrderModel) -> None:
        """The worker is killed (SIGKILL); money comes in and a customer cancels; it restarts."""
        self.s.kill_worker()
        try:
            await self._pay(o, delay=FAULT_DELAY)
            if other is not o and other.status == "awaiting_payment":
                await self._cancel(other, as_admin=False)
            await asyncio.sleep(1.0)
        finally:
            self.s.start_worker()

    # -- after every step: quiet, then compare -------------------------------------------

    @invariant()
    def consistent(self) -> None:
        """After every step that acted: a skipped step (nothing to act on) changed nothing,
        and whatever time did meanwhile is checked after the next step that acts."""
        if not self._acted:
            return
        self._acted = False
        self.campaign.checks += 1
        try:
            self.world.run(self._consistent())
        except AssertionError as exc:
            self.campaign.failures.append(f"{' > '.join(self.sequence)}: {exc}"[:4000])
            raise

    async def _consistent(self) -> None:
        clock = time.monotonic()
        await self._quiet()
        self.campaign.seconds["check:quiet"] += time.monotonic() - clock
        self.campaign.seconds[f"quiet_after:{self._last}"] += time.monotonic() - clock
        clock = time.monotonic()
        problems = await self._compare()
        self.campaign.seconds["check:compare"] += time.monotonic() - clock
        clock = time.monotonic()
        violations = await self.read(
            lambda: check_invariants(self.s.sessions, self.s.client, self.s.settings.task_queue)
        )
        self.campaign.seconds["check:admin_check"] += time.monotonic() - clock
        problems += [f"paysaga admin check: {v}" for v in violations]
        assert not problems, "after " + " > ".join(self.sequence) + ":\n" + "\n".join(problems)

    async def _quiet(self) -> None:
        deadline = time.monotonic() + QUIET_CAP
        # Every tenth check also waits for the whole task queue: a workflow of an earlier
        # example may still be finishing (after a worker kill, an activity in flight is
        # retried once its timeout passes); one still waiting without a case or timer after
        # QUIET_CAP is a violation. Not every check: what an earlier example left running
        # (parked money stays parked) grows with the campaign, and listing it every poll
        # made a long campaign slower by the hour.
        everything = self.campaign.checks % 10 == 0
        while True:
            try:
                # The whole queue first, this example's `_busy` last: the comparison starts
                # right after it, so a window cannot close in between unseen (listing the
                # queue after it once let one close: seed 326805313,
                # `create_order:standard > create_order:razorpay > checkout_return ...`).
                busy = await self._waiting_workflows() if everything else []
                if not busy:
                    busy = await self._busy()
            except DB_ERRORS as exc:
                busy = [f"database: {exc.__class__.__name__}"]
            if not busy:
                return
            assert time.monotonic() < deadline, f"not quiet after {QUIET_CAP:.0f} s: {busy}"
            await asyncio.sleep(0.2)

    async def _status(
        self, workflow_id: str, final: bool = False
    ) -> WorkflowExecutionStatus | None:
        """`final`: a workflow that does not run again once completed (a lifecycle, a
        confirmation), remembered so, so a poll asks only about what still runs."""
        if workflow_id in self._completed:
            return WorkflowExecutionStatus.COMPLETED
        try:
            status = (await self.s.client.get_workflow_handle(workflow_id).describe()).status
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return None
            raise
        if final and status == WorkflowExecutionStatus.COMPLETED:
            self._completed.add(workflow_id)
        return status

    async def _busy(self) -> list[str]:
        """What is still in motion: a window past its end not yet closed, a confirmation
        not yet parked or done, a refund finishing."""
        busy: list[str] = []
        ids = [uuid.UUID(i) for i in self.m.orders]
        async with self.s.sessions() as s:
            statuses = (
                dict(
                    (str(i), st)
                    for i, st in await s.execute(
                        select(Order.id, Order.status).where(Order.id.in_(ids))
                    )
                )
                if ids
                else {}
            )
            refunds = {
                (p, tx): status
                for p, tx, status in await s.execute(
                    select(Refund.provider, Refund.transaction_id, Refund.status)
                )
            }
        for m in self.m.money.values():
            workflow_id = confirmation_workflow_id(m.provider, m.tx)
            status_ = await self._status(workflow_id, final=True)
            if status_ is None:
                busy.append(f"{workflow_id} not started")
            elif status_ == WorkflowExecutionStatus.RUNNING:
                handle = self.s.client.get_workflow_handle(workflow_id)
                state = await handle.query(ConfirmPaymentWorkflow.state)
                if not (
                    state.parked
                    and not state.pending_requests
                    and not state.stuck
                    and not state.pending_audit
                    and state.refunded_note is None
                ) and not await self._waits_quietly(state, m):
                    busy.append(f"{workflow_id} {state.state} ({state.phase})")
            else:
                assert status_ == WorkflowExecutionStatus.COMPLETED, f"{workflow_id}: {status_}"
            refund_status = await self._status(refund_workflow_id(m.provider, m.tx))
            if refund_status == WorkflowExecutionStatus.RUNNING:
                if refunds.get((m.provider, m.tx)) not in (None, "pending"):
                    busy.append(f"refund of {m.tx} finishing")
            elif refund_status not in (None, WorkflowExecutionStatus.COMPLETED):
                raise AssertionError(f"refund of {m.tx}: {refund_status}")
        # An order read awaiting, past its window or closing before the comparison: wait for
        # the close, so the snapshot compared is one state, not two. Checked as of the end of
        # the poll, whose reads can take seconds (a query to a workflow whose worker was just
        # killed waits for the server to move it): checked as of its start, the comparison
        # right after once found an order past its window (`... > create_order:stripe >
        # worker_killed`, seed 1713084962).
        end = time.time()
        for o in self.m.orders.values():
            if statuses[o.id] == "awaiting_payment" and o.expires_at - NEAR_SECONDS < end:
                busy.append(f"order {o.id} awaiting at its window's end")
        return busy + await self._vendor_busy()

    def _windows_closed(self, before: float, after: float) -> None:
        """Time passes in the model too: an order nobody paid whose window ended before the
        views were read is cancelled, its attempt timed out, whichever rule ran meanwhile;
        one whose window ended while they were read may be either."""
        for o in self.m.orders.values():
            if "awaiting_payment" not in o.statuses:
                continue
            if o.expires_at <= before:
                o.statuses = (o.statuses - {"awaiting_payment"}) | {"cancelled"}
                o.attempt_pending = {False}
            elif o.expires_at <= after:
                o.statuses = o.statuses | {"cancelled"}
                o.attempt_pending = o.attempt_pending | {False}

    async def _compare(self) -> list[str]:
        problems: list[str] = []
        views: dict[str, dict[str, Any]] = {}
        self._read_from = time.time()
        for o in self.m.orders.values():
            answer = await self.call("GET", f"/orders/{o.id}", admin())
            assert answer.status_code == 200, answer.text
            views[o.id] = answer.json()
        self._windows_closed(self._read_from, time.time())
        self._vendor_windows_closed(views)  # issue 28
        for m in self.m.money.values():
            problems += await self._compare_money(m, views)
        for o in self.m.orders.values():
            problems += await self._compare_order(o, views[o.id])
        problems += await self._compare_stock()
        # No workflow waiting without a case or a timer: `_quiet` waits for each to finish
        # and fails the step if one still waits after QUIET_CAP (checked once, not again
        # here, where a lifecycle of an earlier example's order closing meanwhile would be
        # caught mid-finish).
        return problems

    async def _compare_order(self, o: OrderModel, view: dict[str, Any]) -> list[str]:
        p: list[str] = []
        status = view["status"]
        if status not in o.statuses:
            p.append(f"order {o.id}: {status}, model allows {sorted(o.statuses)}")
        o.statuses = {status}
        held = [x for x in view["payments"] if x["status"] in ("paid", "refunded")]
        if len(held) > 1:
            p.append(f"order {o.id} paid more than once: {held}")
        # Money stored for a cancelled order: late, refunded, or late and then settled by an
        # admin (resolved, or its refund asked for).
        late = {
            m.tx
            for m in self.m.money.values()
            if m.fates & {LATE, LATE_REFUNDED}
            or (m.was_late and m.fates & {RESOLVED, REFUND_PENDING})
        }
        for x in held:
            if (x["amount"], x["currency"]) != (o.amount, o.currency):
                p.append(f"order {o.id} paid with {x['amount']} {x['currency']}")
            if status in ("paid", "refunded") and x["transaction_id"] not in o.money:
                p.append(f"order {o.id} paid by {x['transaction_id']}, not money sent for it")
            if status in ("cancelled", "awaiting_payment") and x["transaction_id"] not in late:
                p.append(f"order {o.id} ({status}) holds {x['transaction_id']}, not late money")
        if status in ("paid", "refunded") and len(held) != 1:
            p.append(f"order {o.id} is {status} with {len(held)} paid payments")
        if status == "paid" and view["ticket"] is None and view["fulfilment"] in (None, "accepted"):
            p.append(f"order {o.id} paid without a ticket")
        if status in ("awaiting_payment", "cancelled") and view["ticket"] is not None:
            p.append(f"order {o.id} ({status}) has a ticket")
        if status == "awaiting_payment" and self._read_from > o.expires_at + GRACE_SECONDS:
            p.append(f"order {o.id} awaiting payment past its window")
        # The latest attempt: money an admin attached from another gateway has a row of its
        # own after it (seed 483996623), which is no attempt.
        attempt = [x for x in view["payments"] if not x["intent_id"].startswith(ATTACHED)][-1]
        if attempt["intent_id"] != o.intent:
            p.append(f"order {o.id}: latest intent {attempt['intent_id']} != {o.intent}")
        pending = attempt["status"] == "pending"
        if pending not in o.attempt_pending:
            p.append(f"order {o.id}: attempt {attempt['status']}, model {o.attempt_pending}")
        o.attempt_pending = {pending}
        p += await self._journal(o, view, held)
        p += self._compare_fulfilment(o, view)  # issue 28
        return p

    async def _journal(
        self, o: OrderModel, view: dict[str, Any], held: list[dict[str, Any]]
    ) -> list[str]:
        """Every state change has its event and its audit entry."""
        p: list[str] = []
        oid = uuid.UUID(o.id)

        async def counts() -> tuple[Counter[str], Counter[str]]:
            async with self.s.sessions() as s:
                events = Counter(
                    (await s.scalars(select(Event.type).where(Event.order_id == oid))).all()
                )
                audit = Counter(
                    await s.scalars(select(AuditEntry.action).where(AuditEntry.order_id == oid))
                )
            return events, audit

        events, audit = await self.read(counts)
        status = view["status"]
        ever_paid = status in ("paid", "refunded")
        want = {
            "OrderCreated": 1,
            "OrderPaid": int(ever_paid),
            "OrderCancelled": int(status == "cancelled"),
            "PaymentConfirmed": len(held),
            "PaymentRefunded": sum(1 for x in held if x["status"] == "refunded"),
        }
        for kind, n in want.items():
            if events[kind] != n:
                p.append(f"order {o.id} ({status}): {events[kind]} {kind} events, want {n}")
        failed_attempts = sum(1 for x in view["payments"] if x["status"] == "failed")
        if events["PaymentFailed"] < failed_attempts:
            p.append(
                f"order {o.id}: {failed_attempts} failed attempts, {events['PaymentFailed']} events"
            )
        if ever_paid and audit["order.status_changed"] != 1:
            p.append(f"order {o.id} ({status}): {audit['order.status_changed']} status audits")
        if ever_paid and audit["payment.confirmed"] < 1:
            p.append(f"order {o.id} ({status}) without its payment.confirmed audit entry")
        if status == "cancelled" and not any("cancel" in a for a in audit):
            p.append(f"order {o.id} cancelled without an audit entry: {sorted(audit)}")
        if status == "refunded" and audit["refund.succeeded"] != 1:
            p.append(f"order {o.id} refunded with {audit['refund.succeeded']} refund audits")
        return p + vendor_journal(view, events, audit)

    async def _compare_money(self, m: Money, views: dict[str, dict[str, Any]]) -> list[str]:
        p: list[str] = []
        workflow_id = confirmation_workflow_id(m.provider, m.tx)
        description = await self.s.client.get_workflow_handle(workflow_id).describe()
        attributes = {
            k.name: v for k, v in ((x.key, x.value) for x in description.typed_search_attributes)
        }
        state = str(attributes.get("PaymentState"))

        async def rows() -> tuple[Any, list[Any], Any]:
            async with self.s.sessions() as s:
                payment = (
                    await s.execute(
                        select(Payment.status, Payment.order_id, Payment.amount, Order.status)
                        .join(Order, Order.id == Payment.order_id)
                        .where(Payment.provider == m.provider, Payment.transaction_id == m.tx)
                    )
                ).one_or_none()
                cases = (
                    await s.execute(
                        select(ReconciliationCase.kind, ReconciliationCase.state).where(
                            ReconciliationCase.provider == m.provider,
                            ReconciliationCase.transaction_id == m.tx,
                        )
                    )
                ).all()
                refund = (
                    await s.execute(
                        select(Refund.status, Refund.amount, Refund.currency).where(
                            Refund.provider == m.provider, Refund.transaction_id == m.tx
                        )
                    )
                ).one_or_none()
            return payment, list(cases), refund

        payment, cases, refund = await self.read(rows)
        open_kinds = {k for k, st_ in cases if st_ == "open" and k != "refund_failed"}
        running = description.status == WorkflowExecutionStatus.RUNNING
        fate = f"lost (workflow {description.status}, {state}, payment {payment}, cases {cases})"
        if not running and state == "completed" and payment is not None:
            if (payment[0], payment[3]) == ("paid", "paid"):
                fate = APPLIED
            elif (payment[0], payment[3]) == ("refunded", "refunded"):
                fate = APPLIED_REFUNDED
        elif not running and state == "refunded":
            if payment is not None and (payment[0], payment[3]) == ("refunded", "cancelled"):
                fate = LATE_REFUNDED
            elif payment is None and refund is not None and refund[0] == "succeeded":
                fate = REFUNDED
        elif not running and state == "resolved" and not open_kinds:
            fate = RESOLVED
        elif running and state == "refund_pending" and refund is not None:
            fate = REFUND_PENDING
        elif running and state == "paid" and payment is not None and payment[0] == payment[3]:
            # Issue 28: applied, its confirmation waiting for the order's vendor (the order
            # compared says whether it may).
            fate = APPLIED if payment[0] == "paid" else APPLIED_REFUNDED
        elif running and payment is not None and (payment[0], payment[3]) == ("paid", "cancelled"):
            if "late_payment" in open_kinds:
                fate = LATE
        elif running and payment is None and open_kinds & NOT_CAPTURED_CASES:
            fate = UNCAPTURED if "authorization_uncaptured" in open_kinds else CAPTURE_REFUSED
        elif running and open_kinds and payment is None:
            fate = PARKED
        if fate not in m.fates:
            p.append(f"money {m.provider} {m.tx} ({m.kind}): {fate}, model {sorted(m.fates)}")
        else:
            m.fates = {fate}
        m.was_late = m.was_late or fate == LATE
        if m.kind == "authorization":
            p += self._compare_at_razorpay(m, fate)
        if fate in (APPLIED, APPLIED_REFUNDED):
            paid_order = str(payment[1])
            if paid_order not in (m.order_id, m.attached_to):
                p.append(f"money {m.tx} applied to {paid_order}, not its order")
        refund_status = refund[0] if refund is not None else None
        if fate == LATE and refund_status != "pending":
            p.append(f"late money {m.tx}: its refund is {refund_status}, not pending")
        elif refund_status not in m.refund:
            p.append(f"money {m.tx} ({fate}): refund {refund_status}, model {m.refund}")
        m.refund = {refund_status}
        if (
            refund is not None
            and refund[0] == "succeeded"
            and tuple(refund[1:])
            != (
                m.amount,
                m.currency,
            )
        ):
            p.append(f"money {m.tx}: refunded {refund[1]} {refund[2]} of {m.amount} {m.currency}")
        return p

    def _compare_at_razorpay(self, m: Money, fate: str) -> list[str]:
        """An authorization is captured only where it is applied (or found the window
        closed after its capture): one left uncaptured or refused was never captured, so it
        is never captured then refunded."""
        status = self.world.razorpay.payments[m.tx]["status"]
        captured = status in ("captured", "refunded")
        if fate in (NOT_CAPTURED | {RESOLVED}) and captured and not m.was_captured:
            return [f"authorization {m.tx} ({fate}) was captured at Razorpay"]
        if fate in (APPLIED, APPLIED_REFUNDED, LATE, LATE_REFUNDED) and not captured:
            return [f"authorization {m.tx} ({fate}) is {status} at Razorpay, not captured"]
        m.was_captured = m.was_captured or captured
        return []

    async def _compare_stock(self) -> list[str]:
        p: list[str] = []

        async def stock() -> dict[str, int]:
            async with self.s.sessions() as s:
                rows = await s.execute(
                    select(Product.sku, Product.stock).where(Product.sku.in_(self.m.products))
                )
                return {sku: n for sku, n in rows}

        left = await self.read(stock)
        for sku, product in self.m.products.items():
            live = sum(1 for o in self.m.orders.values() if o.sku == sku and o.statuses <= LIVE)
            if left[sku] != product.total - live:
                p.append(f"stock of {sku}: {left[sku]}, want {product.total} - {live} live")
        return p

    async def _waiting_workflows(self) -> list[str]:
        """No workflow waits without a case (confirmations) or a timer (lifecycles on an
        order still awaiting payment, refunds on a pending refund)."""
        p: list[str] = []
        query = f'TaskQueue = "{self.s.settings.task_queue}" AND ExecutionStatus = "Running"'
        async for w in self.s.client.list_workflows(query):
            if w.workflow_type not in ("ConfirmPayment", "Refund", "OrderLifecycle"):
                continue
            if await self._status(w.id) != WorkflowExecutionStatus.RUNNING:
                continue  # the list lags behind

            async def reason(w_id: str = w.id, kind: str = w.workflow_type) -> str | None:
                async with self.s.sessions() as s:
                    if kind == "OrderLifecycle":
                        order_id = uuid.UUID(w_id.split("-", 1)[1])
                        st_ = await s.scalar(select(Order.status).where(Order.id == order_id))
                        return None if st_ == "awaiting_payment" else f"order is {st_}"
                    _, provider, tx = w_id.split("-", 2)
                    if kind == "ConfirmPayment" and await waits_for_vendor(s, provider, tx):
                        return None  # on its own timer until the vendor's window ends
                    if kind == "Refund":
                        rs = await s.scalar(
                            select(Refund.status).where(
                                Refund.provider == provider, Refund.transaction_id == tx
                            )
                        )
                        # No row yet: a late payment's own refund, offline, waits for the
                        # gateway's notice (its row is written then), on its timer.
                        return None if rs in (None, "pending") else f"refund is {rs}"
                    n = await s.scalar(
                        select(func.count())
                        .select_from(ReconciliationCase)
                        .where(
                            ReconciliationCase.provider == provider,
                            ReconciliationCase.transaction_id == tx,
                            ReconciliationCase.state == "open",
                        )
                    )
                    return None if n else "no open case"

            why = await self.read(reason)
            if why is not None:
                p.append(f"{w.id} ({w.workflow_type}) waits: {why}")
        return p


def test_integrity_under_any_interleaving(
    fault_dir: Path, fault_env: dict[str, str], razorpay_api: RazorpayApiServer
) -> None:
    campaign = Campaign(
        seed=int(os.environ.get("PAYSAGA_INTEGRITY_SEED") or random.SystemRandom().getrandbits(32))
    )
    print(
        f"\nintegrity campaign: seed {campaign.seed} (PAYSAGA_INTEGRITY_SEED to replay), "
        f"{EXAMPLES} examples of up to {STEPS} steps"
    )
    outcome = "failed"
    with asyncio.Runner() as runner:
        stack_cm = open_stack(fault_dir, fault_env)
        stack = runner.run(stack_cm.__aenter__())
        try:
            IntegrityMachine.world = World(runner, stack, razorpay_api)
            IntegrityMachine.campaign = campaign
            if MINUTES:
                campaign.deadline = time.monotonic() + MINUTES * 60
            machine = hypothesis_seed(campaign.seed)(IntegrityMachine)
            run_state_machine_as_test(
                machine,
                settings=settings(
                    max_examples=EXAMPLES,
                    stateful_step_count=STEPS,
                    deadline=None,
                    derandomize=False,
                    print_blob=True,
                    suppress_health_check=list(HealthCheck),
                    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
                ),
            )
            outcome = "passed"
        except CampaignOver:
            outcome = "passed"  # every example run before the time bound passed
        finally:
            figures = campaign.report(outcome)
            print(f"integrity campaign: {figures}")
            runner.run(stack_cm.__aexit__(None, None, None))


pytestmark = pytest.mark.integrity
