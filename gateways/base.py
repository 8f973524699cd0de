"""What every gateway's webhook adapter offers (verify, parse, mint an offline intent id), and
the strict parsing helpers the adapters share."""

from __future__ import annotations

import hmac
import json
import secrets
import string
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.money import minor_units, normalise_currency
from domain.payments import AttemptEnd, Confirmation, RefundNotice, is_identifier
from gateways.currencies import from_gateway


class SignatureError(Exception):
    """The request is not provably from the gateway: answered 401, logged as a security event."""


class MalformedEvent(Exception):
    """A correctly signed body we cannot understand: answered 400."""


@dataclass(frozen=True)
class GatewayEvent:
    event_id: str
    event_type: str
    confirmation: Confirmation | None  # None: a valid event we do not act on
    attempt_end: AttemptEnd | None = None  # a failed or cancelled payment attempt
    refund: RefundNotice | None = None  # a refund that succeeded or failed


_ALNUM = string.ascii_letters + string.digits


def random_id(prefix: str, length: int) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def constant_time_in(candidate: str, expected: list[str]) -> bool:
    # Compare against every expected value so timing does not tell which secret matched.
    found = False
    for value in expected:
        found |= hmac.compare_digest(candidate.encode(), value.encode())
    return found


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        # {"amount": 1, "amount": 99999}: which one the gateway meant is not ours to guess.
        raise MalformedEvent("body has a duplicate key")
    return obj


def _no_constant(name: str) -> Any:
    raise MalformedEvent(f"body has {name}, which is not JSON")


def load_json_object(body: bytes) -> dict[str, Any]:
    """Strict JSON as RFC 8259 exchanges it: UTF-8 without a BOM, no duplicate keys, no NaN
    or Infinity. Python's own `json.loads(bytes)` would accept UTF-16, a BOM and all three."""
    try:
        if body.startswith(b"\xef\xbb\xbf"):
            raise MalformedEvent("body starts with a byte order mark")
        data = json.loads(
            body.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constant,
        )
    # ValueError: also bad UTF-8 and integers past Python's 4,300-digit conversion limit.
    except (ValueError, RecursionError) as exc:
        raise MalformedEvent(f"body is not valid JSON: {exc}"[:300]) from exc
    if not isinstance(data, dict):
        raise MalformedEvent("body must be a JSON object")
    return data


def dig(data: Mapping[str, Any], *path: str) -> Any:
    """Walks nested objects; a missing or mistyped step is a malformed event."""
    node: Any = data
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            raise MalformedEvent(f"missing field {'.'.join(path)}")
        node = node[key]
    return node


def text(data: Mapping[str, Any], *path: str) -> str:
    value = dig(data, *path)
    if not isinstance(value, str) or not value or len(value) > 255 or not value.isprintable():
        raise MalformedEvent(f"field {'.'.join(path)} must be a non-empty printable string")
    return value


def reason(value: object) -> str | None:
    """A gateway's failure text, kept only as short printable text (it goes into an event)."""
    if isinstance(value, str) and value.isprintable():
        return value[:200] or None
    return None


def identifier(value: object, field: str) -> str:
    if not is_identifier(value):
        raise MalformedEvent(f"{field} must be 1 to 255 visible ASCII characters")
    assert isinstance(value, str)
    return value


def hint(value: object) -> str | None:
    """An optional reference (an order id echoed in metadata): kept only if it is an id."""
    return value if is_identifier(value) and isinstance(value, str) else None


def identifier_at(data: Mapping[str, Any], *path: str) -> str:
    return identifier(dig(data, *path), ".".join(path))


def money(
    data: Mapping[str, Any],
    amount_path: tuple[str, ...],
    currency_path: tuple[str, ...],
    gateway: str | None = None,
) -> tuple[int, str]:
    """An amount and its currency, in ISO 4217 minor units: a `gateway`'s own units are
    converted (`gateways.currencies`); one with no exact ISO amount is malformed."""
    try:
        amount = minor_units(dig(data, *amount_path))
        currency = normalise_currency(dig(data, *currency_path))
        return (from_gateway(gateway, amount, currency) if gateway else amount), currency
    except ValueError as exc:  # NotRepresentable too
        raise MalformedEvent(str(exc)) from exc


class WebhookAdapter(ABC):
    """One gateway's webhook scheme: its signature, its event vocabulary, its id shapes."""

    name: str

    def __init__(self, secrets: tuple[str, ...], livemode: bool | None = None) -> None:
        self.secrets = secrets
        # Stripe: the mode of the configured API key; an event of the other mode is refused.
        self.livemode = livemode

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        """Raises SignatureError unless one of the configured secrets signed this body."""
        if not self.secrets:
            raise SignatureError(f"no {self.name} webhook secret configured")
        self._verify(body, headers, now)

    @abstractmethod
    def _verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        """The gateway's own scheme, with at least one secret configured."""

    @abstractmethod
    def parse(self, body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """Normalises a verified body; raises MalformedEvent."""

    @abstractmethod
    def mint_intent_id(self) -> str:
        """Offline mode: an intent id in the gateway's own shape."""
