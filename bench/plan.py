"""How long and how hard each of the bench's phases runs: the full plan and the quick one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    steps: tuple[float, ...]  # the ramp's offered rates, confirmations per second
    step_seconds: float
    hold: float  # a step holds if all its orders are paid within this long of its end
    half_seconds: float  # the run at half capacity (latency, CPU per paid order)
    beside_seconds: float  # checkout beside confirmations at half capacity
    ceiling_workflows: int  # per engine ceiling, at most
    ceiling_seconds: float  # per engine ceiling, at most (no new workflow starts after)
    alone_orders: int  # checkout, one customer at a time
    drain: float  # how long to wait for stragglers below capacity
    plain: bool  # the plain transactional handler reference
    plain_duration: float
    burst: int  # webhooks for the plain handler's saturation run
    parked: int  # unmatched confirmations parked for the memory probe (0: no probe)
    probe_rate: int
    probe_duration: float


STEPS = (5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 60.0)

FULL = Plan(STEPS, 20, 10, 60, 30, 1000, 60, 50, 60, True, 30, 3000, 10_000, 50, 30)
# The quick plan: shorter steps and runs, without the plain handler and the parked probe. Its
# steps last 8 s, so a step holds if paid within 4 s of its end: the same share of the step as
# the full plan's 10 s of 20 s (both hold only if the stack completes two thirds of the offered
# rate or more; 10 s after an 8 s step would pass a stack completing less than half of it).
QUICK = Plan(STEPS, 8, 4, 20, 10, 300, 12, 30, 30, False, 4, 150, 0, 50, 4)
