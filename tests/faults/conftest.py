"""Fault tests: real processes, really stopped (tests/support/fault_stack.py). Each test gets
its own PostgreSQL, Temporal dev server and worker subprocess."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fault_stack import FaultStack, open_stack


@pytest.fixture
def fault_env() -> dict[str, str]:
    """Timing for the fault tests: first phase 8 s, then a slow loop of 2 to 4 s."""
    return {
        "PAYSAGA_RETRY_FIRST_PHASE_SECONDS": "8",
        "PAYSAGA_RETRY_FAST_MAX_SECONDS": "2",
        "PAYSAGA_RETRY_SLOW_INITIAL_SECONDS": "2",
        "PAYSAGA_RETRY_SLOW_MAX_SECONDS": "4",
    }


@pytest.fixture
async def fault_stack(fault_dir: Path, fault_env: dict[str, str]) -> AsyncIterator[FaultStack]:
    async with open_stack(fault_dir, fault_env) as stack:
        yield stack
