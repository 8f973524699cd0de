"""The circuit breaker and the call wrapper, with an injected clock and sleep: what opens the
breaker (server errors, timeouts), what does not (refusals, rate limits), one trial call when
half-open, its success closing and its failure re-opening; and the state and every call as
metrics."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import generate_latest

from gateways.api import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breaker,
    GatewayRefused,
    GatewayUnavailable,
)
from gateways.calls import Calls, Failure
from observability.metrics import API, WORKER, WORKER_GATEWAYS


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Recorded:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.states: list[int] = []

    def call(self, provider: str, call: str, result: str, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append((provider, call, result))

    def circuit(self, provider: str, state: int) -> None:
        self.states.append(state)


class Refused(Exception):
    pass


class Down(Exception):
    pass


class Busy(Exception):
    def __init__(self, wait: float | None) -> None:
        self.wait = wait


def classify(exc: Exception) -> Failure | None:
    if isinstance(exc, Refused):
        return Failure("refused", "no")
    if isinstance(exc, Down):
        return Failure("unavailable", "down")
    if isinstance(exc, Busy):
        return Failure("rate_limited", "busy", exc.wait)
    return None


class Rig:
    def __init__(self) -> None:
        self.clock, self.metrics = Clock(), Recorded()
        self.slept: list[float] = []
        self.breaker = Breaker("gw", failures=3, open_seconds=30, clock=self.clock)
        self.breaker.metrics = self.metrics
        self.calls = Calls("gw", classify, self.metrics, self.breaker, self.sleep)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    async def run(
        self, *outcomes: Exception | None, retries: int = 0
    ) -> tuple[str | None, list[int]]:
        """One call whose tries end as `outcomes` (None: ok); the error's type, if any, and
        which tries ran."""
        tries: list[int] = []
        queue = list(outcomes)

        async def attempt(n: int) -> str:
            tries.append(n)
            outcome = queue.pop(0)
            if outcome is not None:
                raise outcome
            return "ok"

        try:
            await self.calls("look_up", attempt, retries)
        except (GatewayRefused, GatewayUnavailable) as exc:
            return type(exc).__name__, tries
        return None, tries


@pytest.fixture
def rig() -> Rig:
    return Rig()


async def test_server_errors_open_it_and_then_no_call_is_made(rig: Rig) -> None:
    for _ in range(3):
        assert (await rig.run(Down()))[0] == "GatewayUnavailable"
    assert rig.breaker.state == OPEN and rig.metrics.states == [OPEN]
    error, tries = await rig.run(None)
    assert (error, tries) == ("GatewayUnavailable", [])  # refused here, the gateway not asked
    assert [r for _, _, r in rig.metrics.calls] == ["unavailable"] * 3


async def test_refusals_and_rate_limits_never_open_it(rig: Rig) -> None:
    for _ in range(10):
        assert (await rig.run(Refused()))[0] == "GatewayRefused"
        assert (await rig.run(Busy(0.5), Busy(0.5), Busy(0.5)))[0] == "GatewayUnavailable"
    assert rig.breaker.state == CLOSED and rig.metrics.states == []
    # Two failures, then a refusal (the gateway answered): the count starts again.
    await rig.run(Down())
    await rig.run(Down())
    await rig.run(Refused())
    await rig.run(Down())
    assert rig.breaker.state == CLOSED


async def test_a_rate_limit_is_waited_out_as_retry_after_says_within_bounds(rig: Rig) -> None:
    error, tries = await rig.run(Busy(0.5), Busy(60), None)
    assert error is None and tries == [0, 0, 0]  # the same try again, not a "retry"
    assert rig.slept == [0.5, 2.0]  # 60 s is not waited out inside a request
    assert [r for _, _, r in rig.metrics.calls] == ["rate_limited", "rate_limited", "ok"]


async def test_server_errors_are_retried_only_when_the_caller_allows(rig: Rig) -> None:
    assert await rig.run(Down(), Down(), None, retries=2) == (None, [0, 1, 2])
    assert rig.slept == [0.2, 0.4]
    assert await rig.run(Down(), None) == ("GatewayUnavailable", [0])
    assert rig.breaker.failures == 1  # one failed call, however many tries it took


async def test_half_open_lets_one_trial_through_and_its_success_closes(rig: Rig) -> None:
    for _ in range(3):
        await rig.run(Down())
    rig.clock.now += 29.9
    assert (await rig.run(None))[1] == []  # still open
    rig.clock.now += 0.1
    rig.breaker.check()  # the trial call is under way...
    assert rig.breaker.state == HALF_OPEN
    with pytest.raises(GatewayUnavailable):
        rig.breaker.check()  # ...and nobody else is let through meanwhile
    rig.breaker.succeeded()
    assert rig.breaker.state == CLOSED
    assert rig.metrics.states == [OPEN, HALF_OPEN, CLOSED]
    assert await rig.run(None) == (None, [0])


async def test_refusing_is_a_look_that_takes_no_trial(rig: Rig) -> None:
    """The checkout asks `refusing` before it reserves stock for a gateway call: true while
    open or while the half-open trial is under way, and asking never uses up the trial."""
    assert not rig.breaker.refusing()
    for _ in range(3):
        await rig.run(Down())
    assert rig.breaker.refusing()
    rig.clock.now += 30
    assert not rig.breaker.refusing() and not rig.breaker.refusing()
    rig.breaker.check()  # the trial is still there to take
    assert rig.breaker.refusing()  # and, taken, nobody else gets through
    rig.breaker.succeeded()
    assert not rig.breaker.refusing()


async def test_a_failed_trial_opens_it_again_for_the_whole_period(rig: Rig) -> None:
    for _ in range(3):
        await rig.run(Down())
    rig.clock.now += 30
    assert await rig.run(Down()) == ("GatewayUnavailable", [0])  # the one trial, failed
    assert rig.breaker.state == OPEN
    rig.clock.now += 29
    assert (await rig.run(None))[1] == []
    rig.clock.now += 1
    assert await rig.run(None) == (None, [0])
    assert rig.metrics.states == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


async def test_a_rate_limited_or_abandoned_trial_leaves_it_half_open(rig: Rig) -> None:
    for _ in range(3):
        await rig.run(Down())
    rig.clock.now += 30
    assert (await rig.run(Busy(0), Busy(0), Busy(0)))[0] == "GatewayUnavailable"
    assert rig.breaker.state == HALF_OPEN and not rig.breaker.trial

    async def abandoned(_: int) -> str:
        raise asyncio.CancelledError  # the request went away: tells nothing of the gateway

    with pytest.raises(asyncio.CancelledError):
        await rig.calls("look_up", abandoned)
    assert rig.breaker.state == HALF_OPEN and not rig.breaker.trial
    assert await rig.run(None) == (None, [0])
    assert rig.breaker.state == CLOSED


def test_the_breaker_reports_closed_when_made() -> None:
    metrics = Recorded()
    Breaker("gw", metrics=metrics)
    assert metrics.states == [CLOSED]


def test_each_process_shows_its_own_gateway_calls() -> None:
    """The API's and the worker's registries each carry the call histogram and the breaker
    gauge; a call recorded by one does not show in the other."""
    WORKER_GATEWAYS.call("razorpay", "refund", "ok", 0.2)
    WORKER_GATEWAYS.circuit("razorpay", 2)
    worker, api = generate_latest(WORKER).decode(), generate_latest(API).decode()
    assert (
        'paysaga_gateway_call_seconds_count{call="refund",provider="razorpay",result="ok"}'
        in worker
    )
    assert 'paysaga_gateway_circuit_state{provider="razorpay"} 2.0' in worker
    assert 'call="refund",provider="razorpay"' not in api
    assert "# TYPE paysaga_gateway_call_seconds histogram" in api
    WORKER_GATEWAYS.circuit("razorpay", 0)
