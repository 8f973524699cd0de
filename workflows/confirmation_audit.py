"""UC-35 step 6, the confirmation's audit trail: entries are queued in the workflow's state
and written by one task beside the saga, never in its way.

6a: while the database refuses the trail for longer than its first phase, each pending entry
goes to the worker's log once, marked `AUDIT_FALLBACK`, and stays queued until it is written.
A mixin of `ConfirmPaymentWorkflow` (`workflows.payment_confirmation`), which owns the state.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.confirmation import ConfirmationActivities
    from domain.confirmation import AuditRecord, ConfirmationState, Phase, confirmation_records
    from domain.payments import Confirmation
    from workflows.steps import StepPolicy, StepRunner

AUDIT_FALLBACK = "AUDIT_FALLBACK"
# 6a: the audit trail gets a shorter first phase; then its entries go to the log, marked.
AUDIT = StepPolicy("audit", first_phase_cap=60.0, log_fallback=True)


class AuditTrail:
    _c: Confirmation
    _s: ConfirmationState
    _steps: StepRunner
    _writing: int  # how many pending audit entries the writer has in flight

    def _queue_audit(self, *entries: AuditRecord) -> None:
        self._s.pending_audit.extend(entries)
        if AUDIT.name in self._s.stuck:
            self._log_audit_fallback()

    def _queue_audit_coalesced(self, entry: AuditRecord) -> None:
        """Repeatable requests (retry, refused ones) while the trail is behind: one entry with
        a count, so a flood cannot grow the state without bound."""
        pending = self._s.pending_audit
        for i in range(self._writing, len(pending)):  # not into the batch being written
            e = pending[i]
            if e.action == entry.action and e.actor == entry.actor:
                pending[i] = replace(
                    e, detail=e.detail | {"repeats": e.detail.get("repeats", 1) + 1}
                )
                return
        self._queue_audit(entry)

    async def _write_audit_trail(self) -> None:
        s = self._s
        while True:
            await workflow.wait_condition(lambda: bool(s.pending_audit) or s.phase == Phase.DONE)
            if not s.pending_audit:
                return
            batch = list(s.pending_audit)
            self._writing = len(batch)
            await self._steps.run(AUDIT, ConfirmationActivities.write_audit, batch)
            del s.pending_audit[: len(batch)]
            self._writing = 0
            written = {e.dedupe_key for e in batch}
            s.audit_logged = [k for k in s.audit_logged if k not in written]

    def _log_audit_fallback(self) -> None:
        """6a: entries the database refused go to the log, marked, once each; they stay queued."""
        s = self._s
        for entry in s.pending_audit:
            if entry.dedupe_key in s.audit_logged:
                continue
            s.audit_logged.append(entry.dedupe_key)
            workflow.logger.error(
                "%s %s", AUDIT_FALLBACK, json.dumps(asdict(entry), sort_keys=True, default=str)
            )

    def _confirmation_audit(self) -> tuple[AuditRecord, AuditRecord]:
        assert self._s.order_id is not None
        return confirmation_records(self._c, self._s.order_id)
