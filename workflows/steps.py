"""How a saga step outlasts a failing database: a typed policy per step, and one runner.

A step goes through three tiers, each cheaper in history than a loop in the workflow:
1. local attempts: three tries in the worker within about 0.3 s, no server round trip (the
   happy path is one workflow task);
2. the first phase: a regular activity, retried fast by the server until the policy's
   first-phase budget is spent;
3. escalated (4a, 5a, 6a, 8a): the workflow's `Escalation` records it (state, case, fallback),
   then one activity whose retry policy the *server* holds, slow and without end. An outage of
   any length adds no history events per attempt; an admin's `retry` cancels it and issues it
   again, so the next attempt is now.
Nothing is given up: giving up would lose a payment that really happened. What no retry can
mend (a non-retryable error type) is raised to the workflow, which makes it a visible case.
"""

from __future__ import annotations

import asyncio
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    CancelledError,
    TimeoutError,
)
from temporalio.types import MethodAsyncSingleParam

with workflow.unsafe.imports_passed_through():
    from domain.payments import (
        CAPTURE_REFUSED,
        NOT_PAYABLE,
        UNPROCESSABLE,
        CaseKind,
        RecoveryTiming,
    )

In = TypeVar("In")  # a step's input
Out = TypeVar("Out")  # a step's result
# An activity method of an activities class, as the SDK types it: mypy checks each step's
# input and result through the runner.
Activity = MethodAsyncSingleParam[Any, In, Out]

NOT_RETRYABLE = [NOT_PAYABLE, UNPROCESSABLE]
# What the saga parks rather than retries: also a gateway's refusal to capture (2c), which
# only the capture step raises, under its own retry policy.
UNMENDABLE = [*NOT_RETRYABLE, CAPTURE_REFUSED]

SHORT_DB_CALL = timedelta(seconds=10)
RETRY_DEBOUNCE = timedelta(seconds=1)
LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    backoff_coefficient=2.0,
    maximum_attempts=3,
    non_retryable_error_types=NOT_RETRYABLE,
)
# Bookkeeping in our own database (cases, refunds): nothing is in flight to lose, so the
# server waits the database out, however long, at most 30 s between attempts.
BOOKKEEPING_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NOT_RETRYABLE,
)


@dataclass(frozen=True)
class StepPolicy:
    """A step's failure policy, named where the step is called."""

    name: str
    # Escalation opens this case and says `needs_reconciliation` (4a, 5a); None: no case.
    case: CaseKind | None = None
    # The first phase lasts the configured time, or this many seconds if fewer.
    first_phase_cap: float | None = None
    # 6a: once escalated, the step's pending data goes to the log, marked, once per entry.
    log_fallback: bool = False


class Escalation(Protocol):
    """What the workflow does when a step's first phase is spent, and when it recovers."""

    async def escalated(self, policy: StepPolicy, failure: str) -> None: ...

    async def recovered(self, policy: StepPolicy, resolution: str) -> None: ...

    def is_escalated(self, policy: StepPolicy) -> bool: ...

    def leaving_task(self) -> None:
        """The step is about to wait on the server (a regular activity): what the workflow
        held back for the end of its task is written now."""


def unmendable(err: BaseException) -> ApplicationError | None:
    """The non-retryable cause of a failure, if it is one, whether it arrives wrapped in an
    ActivityError or as the cause itself."""
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type in UNMENDABLE:
        return cause
    return None


def describe(err: BaseException) -> str:
    while err.__cause__ is not None or getattr(err, "cause", None) is not None:
        err = getattr(err, "cause", None) or err.__cause__  # type: ignore[assignment]
    return f"{type(err).__name__}: {err}"[:500]


class StepRunner:
    def __init__(self, timing: RecoveryTiming, escalation: Escalation) -> None:
        self._timing = timing
        self._escalation = escalation
        self._generation = 0  # bumped by `retry`: every escalated step tries again now
        self._stopping = False
        # A retry reissues an escalated step at most this often.
        self._debounce = min(RETRY_DEBOUNCE, timedelta(seconds=timing.slow_initial))

    def stop(self) -> None:
        """The run is about to continue as new and cancels its tasks. The SDK delivers that
        cancellation to a task waiting on an activity as an ActivityError (cause: cancelled),
        which must not pass for a failing step (and escalate it): from now on the runner turns
        every such error back into a cancellation."""
        self._stopping = True

    def _cancelled(self, err: BaseException) -> None:
        if self._stopping:
            raise asyncio.CancelledError from err

    def nudge(self) -> None:
        """`retry`: every escalated step tries again now (see `_slowly`)."""
        self._generation += 1

    async def run(self, policy: StepPolicy, activity: Activity[In, Out], arg: In) -> Out:
        """Runs one step until it succeeds; raises only what no retry can mend."""
        if not self._escalation.is_escalated(policy):  # a continued run resumes escalated
            local = await self.locally(activity, arg)
            if local is not None:
                return local[0]
            t = self._timing
            first_phase = min(t.first_phase, policy.first_phase_cap or t.first_phase)
            self._escalation.leaving_task()
            try:
                return await workflow.execute_activity_method(
                    activity,
                    arg,
                    start_to_close_timeout=SHORT_DB_CALL,
                    schedule_to_close_timeout=timedelta(seconds=first_phase),
                    retry_policy=RetryPolicy(
                        initial_interval=timedelta(seconds=min(1.0, t.fast_max)),
                        backoff_coefficient=2.0,
                        maximum_interval=timedelta(seconds=t.fast_max),
                        non_retryable_error_types=NOT_RETRYABLE,
                    ),
                )
            except ActivityError as err:
                self._cancelled(err)
                if unmendable(err):
                    raise
                failure = describe(err)
            workflow.logger.warning(
                "step %s still failing after %.0f s: %s", policy.name, first_phase, failure
            )
            await self._escalation.escalated(policy, failure)
        else:
            await self._escalation.escalated(policy, "")  # re-arms what a new run lost
        try:
            result = await self._slowly(activity, arg)
        except (ActivityError, ApplicationError) as err:
            self._cancelled(err)
            # Unmendable after all (the order was cancelled meanwhile, say): the escalation
            # ends here, and the workflow parks the money with a case of its own.
            await self._escalation.recovered(policy, f"gave way to: {describe(err)}")
            raise
        await self._escalation.recovered(policy, "recovered automatically")
        return result

    async def record(self, activity: Activity[In, Out], arg: In) -> Out:
        """Bookkeeping: a local attempt first, then server retries until the database takes it."""
        local = await self.locally(activity, arg)
        if local is not None:
            return local[0]
        self._escalation.leaving_task()
        return await workflow.execute_activity_method(
            activity, arg, start_to_close_timeout=SHORT_DB_CALL, retry_policy=BOOKKEEPING_RETRY
        )

    async def locally(self, activity: Activity[In, Out], arg: In) -> tuple[Out] | None:
        """(result,), or None once the local attempts are spent.

        Bounded by attempts, not by a schedule-to-close timeout: with temporalio 1.35 a
        failing local activity with a 1 s schedule-to-close was still retrying after 30 s.
        """
        try:
            return (
                await workflow.execute_local_activity_method(
                    activity, arg, start_to_close_timeout=SHORT_DB_CALL, retry_policy=LOCAL_RETRY
                ),
            )
        except (ActivityError, ApplicationError, TimeoutError) as err:
            self._cancelled(err)
            if unmendable(err):
                raise
            return None

    async def _slowly(self, activity: Activity[In, Out], arg: In) -> Out:
        """The escalated phase: one activity retried by the server, reissued on `retry`."""
        t = self._timing
        policy = RetryPolicy(
            initial_interval=timedelta(seconds=t.slow_initial),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=max(t.slow_initial, t.slow_max)),
            non_retryable_error_types=NOT_RETRYABLE,
        )
        self._escalation.leaving_task()
        while True:
            generation = self._generation
            issued = workflow.now()
            handle = workflow.start_activity_method(
                activity, arg, start_to_close_timeout=SHORT_DB_CALL, retry_policy=policy
            )
            try:
                await workflow.wait_condition(
                    lambda: handle.done() or self._generation != generation  # noqa: B023
                )
                # `retry`: the next attempt is now, but at most one reissue per debounce, so a
                # flood of requests is not a flood of cancelled and reissued activities.
                pause = (issued + self._debounce - workflow.now()).total_seconds()
                if not handle.done() and pause > 0:
                    with suppress(asyncio.TimeoutError):
                        await workflow.wait_condition(handle.done, timeout=pause)
                if handle.done():
                    return await handle
                handle.cancel()
                try:
                    return await handle  # it succeeded just before the cancel took
                except ActivityError as err:
                    self._cancelled(err)
                    if not isinstance(err.cause, CancelledError):
                        if unmendable(err):
                            raise
            finally:
                if not handle.done():  # this task was cancelled (a continue-as-new)
                    handle.cancel()
