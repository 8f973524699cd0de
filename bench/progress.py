"""The bench's progress bar on stderr: one share of the whole run per phase."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total: float) -> None:
        self.total = total
        self.done = 0.0
        self.phase = ""
        self.started = time.monotonic()

    def show(self, phase: str | None = None, extra: float = 0.0) -> None:
        if phase is not None:
            self.phase = phase
        share = min(1.0, (self.done + extra) / self.total)
        bar = "#" * int(share * 30)
        elapsed = time.monotonic() - self.started
        sys.stderr.write(f"\r[{bar:<30}] {share:4.0%} {elapsed:5.0f}s  {self.phase:<48}"[:110])
        sys.stderr.flush()

    def advance(self, amount: float) -> None:
        self.done += amount
        self.show()
