"""CPU time by process of the bench's stack: the worker, the API, the Temporal dev server and
this stack's PostgreSQL (its postmaster and backends, ended backends included).

Other agents and test runs on the same machine start their own PostgreSQL servers: only the
one whose postmaster.pid is in this stack's data directory is counted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import psutil

ROLES = {"paysaga.cli worker": "worker", "paysaga.cli api": "api"}
ORDER = ("worker", "temporal", "api", "postgres")


def postmaster(pgdata: Path) -> psutil.Process | None:
    try:
        return psutil.Process(int((pgdata / "postmaster.pid").read_text().split()[0]))
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


class Processes:
    """The stack's processes by role, found once (PostgreSQL's backends afresh each time)."""

    def __init__(self, pgdata: Path) -> None:
        self.by_role: dict[str, list[psutil.Process]] = {"worker": [], "api": [], "temporal": []}
        for proc in psutil.Process().children(recursive=True):
            try:
                cmd, name = " ".join(proc.cmdline()), proc.name()
            except psutil.Error:
                continue
            role = next((r for key, r in ROLES.items() if key in cmd), None)
            if role is None and name.startswith("temporal"):
                role = "temporal"
            if role is not None:
                self.by_role[role].append(proc)
        self.postmaster = postmaster(pgdata)

    def seconds(self) -> dict[str, float]:
        """CPU seconds so far, by role."""
        out = {role: sum(_own(p) for p in procs) for role, procs in self.by_role.items()}
        out["postgres"] = self._postgres()
        return out

    def _postgres(self) -> float:
        pm = self.postmaster
        if pm is None:
            return 0.0
        try:
            # Backends that ended were reaped by the postmaster: their time is its children's.
            t = pm.cpu_times()
            total = t.user + t.system + t.children_user + t.children_system
            return float(total) + sum(_own(c) for c in pm.children())
        except psutil.Error:
            return 0.0


def _own(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {role: after[role] - before[role] for role in after}


async def idle_rate(procs: Processes, seconds: float) -> dict[str, float]:
    """CPU seconds per second each role spends with nothing to do (timers, pollers): taken
    off a measurement window of the same stack."""
    before, started = procs.seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    spent = delta(procs.seconds(), before)
    wall = time.monotonic() - started
    return {role: v / wall for role, v in spent.items()}


async def until_quiet(procs: Processes, busy_below: float, limit: float) -> None:
    """Waits until the stack spends less than `busy_below` CPU seconds a second (what an
    order causes after its ticket, the order's own workflow ending, say; or what a step past
    the knee left behind), at most `limit` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = procs.seconds()
        await asyncio.sleep(1.0)
        if sum(delta(procs.seconds(), before).values()) <= busy_below:
            return


def back_to_idle(idle: dict[str, float]) -> float:
    """A busy-below threshold for `until_quiet`: about the idle stack's own CPU."""
    return sum(idle.values()) * 1.5 + 0.02


def per_order(
    spent: dict[str, float], idle: dict[str, float], wall: float, orders: int
) -> dict[str, float]:
    """CPU ms per order by role, idle time over the window taken off (never below zero)."""
    n = max(orders, 1)
    return {
        role: round(max(0.0, spent[role] - idle.get(role, 0.0) * wall) * 1000 / n, 1)
        for role in ORDER
    }
