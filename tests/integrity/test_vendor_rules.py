"""The campaign's vendor rules (issue 28) driven through fixed sequences, each step followed by
the campaign's own check (quiet, compare with the model, `paysaga admin check`): a random
campaign of a few examples draws a paid vendor order too rarely to show that the rules and
the comparison agree with the stack. Same stack as the campaign (real processes, Razorpay
online against its test server)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integrity.model import APPLIED, LATE, OrderModel
from tests.integrity.test_integrity import Campaign, IntegrityMachine, World
from tests.support.fault_stack import open_stack
from tests.support.razorpay_server import RazorpayApiServer

pytestmark = pytest.mark.integrity


@pytest.fixture
def machine(
    fault_dir: Path, fault_env: dict[str, str], razorpay_api: RazorpayApiServer
) -> Iterator[Callable[[], IntegrityMachine]]:
    with asyncio.Runner() as runner:
        stack_cm = open_stack(fault_dir, fault_env)
        stack = runner.run(stack_cm.__aenter__())
        try:
            IntegrityMachine.world = World(runner, stack, razorpay_api)
            IntegrityMachine.campaign = Campaign()
            yield IntegrityMachine
        finally:
            runner.run(stack_cm.__aexit__(None, None, None))


def paid_vendor_order(m: IntegrityMachine, provider: str) -> tuple[OrderModel, int]:
    """A vendor order paid by its gateway, checked pending: it and its index for the rules."""
    m.vendor_order(provider)
    m.consistent()
    index = len(m.m.orders) - 1
    o = list(m.m.orders.values())[index]
    assert o.vendor
    m.pay(index)
    m.consistent()
    assert o.fulfilment == {"pending_vendor_acceptance"}, o.fulfilment
    return o, [x for x in m.m.orders.values() if x.vendor].index(o)


def refund_of(m: IntegrityMachine, o: OrderModel) -> int:
    """The index of the order's money among the `gateway_refunds` rule's candidates."""
    candidates = [
        x for x in m.m.money.values() if x.refund == {"pending"} or x.fates in ({APPLIED}, {LATE})
    ]
    return next(i for i, x in enumerate(candidates) if x.order_id == o.id)


def test_accept_reject_and_window_end_agree_with_the_model(
    machine: Callable[[], IntegrityMachine],
) -> None:
    m = machine()
    m.products([("razorpay", 0)])
    accepted, i = paid_vendor_order(m, "razorpay")
    m.vendor_accepts(i, as_admin=False)
    m.consistent()
    assert (accepted.fulfilment, accepted.statuses) == ({"accepted"}, {"paid"})

    rejected, i = paid_vendor_order(m, "stripe")
    m.vendor_rejects(i)
    m.consistent()
    assert rejected.fulfilment == {"rejected"}
    m.gateway_refunds(refund_of(m, rejected))
    m.consistent()
    assert rejected.statuses == {"refunded"}

    timed_out, _ = paid_vendor_order(m, "standard")
    pending = [o for o in m.m.orders.values() if "pending_vendor_acceptance" in o.fulfilment]
    m.vendor_window_ends(pending.index(timed_out))
    m.consistent()
    assert timed_out.fulfilment == {"rejected"}
    m.gateway_refunds(refund_of(m, timed_out))
    m.consistent()
    assert timed_out.statuses == {"refunded"}
    assert not m.campaign.skipped and not m.campaign.failures, m.campaign.figures()
    m.teardown()


def test_an_order_refunded_by_its_owner_while_pending_is_rejected_without_a_second_refund(
    machine: Callable[[], IntegrityMachine],
) -> None:
    m = machine()
    m.products([("standard", 0)])
    o, i = paid_vendor_order(m, "razorpay")
    m.refund(list(m.m.orders.values()).index(o), as_admin=False)
    m.consistent()
    m.gateway_refunds(refund_of(m, o))
    m.consistent()
    assert (o.statuses, o.fulfilment) == ({"refunded"}, {"pending_vendor_acceptance"})
    m.vendor_accepts(i, as_admin=True)  # refused: the order is no longer paid
    m.consistent()
    m.vendor_rejects(i)
    m.consistent()
    assert (o.statuses, o.fulfilment) == ({"refunded"}, {"rejected"})
    assert not m.campaign.skipped and not m.campaign.failures, m.campaign.figures()
    m.teardown()
