"""Fixtures the API's online tests share: localstripe (the Stripe API and webhook sender) for a
module, and the recording, fault-injecting proxy in front of it for a test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.localstripe import FaultyStripe, running_localstripe


@pytest.fixture(scope="module")
def localstripe() -> Iterator[str]:
    yield from running_localstripe()


@pytest.fixture
def proxy(localstripe: str) -> Iterator[FaultyStripe]:
    """Between the API and localstripe: records every request, answers faults on demand."""
    faulty = FaultyStripe(localstripe)
    yield faulty
    faulty.close()
