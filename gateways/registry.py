"""One `Gateway` base class for every payment gateway, and the registry of those installed.

A gateway is one package under `gateways/` (pretix's payment provider plugins, saleor's
`payment/gateways/<name>/`): a `Gateway` subclass that reads its own `PAYSAGA_{NAME}_*`
settings and offers its webhook adapter, and, in online mode, its API and checkout return.
It is installed by one line, `register(TheGateway)` (`gateways/__init__.py` for ours). Nothing
outside `gateways/` says a gateway's name: the API's routes, the checkout, the look-up and the
refund ask the registry.
"""

from __future__ import annotations

from abc import ABC
from collections.abc import Iterator, Mapping
from typing import ClassVar

from gateways.api import NO_METRICS, GatewayApi, GatewayMetrics
from gateways.base import WebhookAdapter
from gateways.checkout import CheckoutReturn


def env_secrets(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """A comma-separated list: more than one is key rotation, any one verifies."""
    return tuple(s.strip() for s in (env.get(name) or "").split(",") if s.strip())


def env_text(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name) or None


class Gateway(ABC):
    """A gateway configured from the environment. Offline (no API keys) `api` and `checkout`
    are None: intents are minted locally and only webhooks confirm."""

    name: ClassVar[str]  # the provider's name in URLs, workflow ids and rows
    adapter: ClassVar[type[WebhookAdapter]]
    api: GatewayApi | None = None
    checkout: CheckoutReturn | None = None

    def __init__(self, env: Mapping[str, str], metrics: GatewayMetrics = NO_METRICS) -> None:
        self.webhook_secrets = env_secrets(env, f"PAYSAGA_{self.name.upper()}_WEBHOOK_SECRETS")
        self.webhooks = self.adapter(self.webhook_secrets, self.livemode())

    def livemode(self) -> bool | None:
        """The mode of the configured API key, where the gateway has modes (Stripe): an event
        of the other mode is refused."""
        return None

    def secrets(self) -> tuple[str, ...]:
        """Every secret this gateway was given: logs must never carry one."""
        return self.webhook_secrets

    def mint_intent_id(self) -> str:
        return self.webhooks.mint_intent_id()


_REGISTERED: dict[str, type[Gateway]] = {}


def register(gateway: type[Gateway]) -> type[Gateway]:
    if gateway.name in _REGISTERED and _REGISTERED[gateway.name] is not gateway:
        raise ValueError(f"a gateway named {gateway.name} is registered already")
    _REGISTERED[gateway.name] = gateway
    return gateway


def unregister(name: str) -> None:
    _REGISTERED.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_REGISTERED)


def is_registered(name: str) -> bool:
    return name in _REGISTERED


def gateway_for(
    name: str, secrets: tuple[str, ...], livemode: bool | None = None
) -> WebhookAdapter:
    """A registered gateway's webhook adapter with these secrets (tests, fuzzing)."""
    return _REGISTERED[name].adapter(secrets, livemode)


class Gateways:
    """Every registered gateway, configured once per process, so each API client's circuit
    breaker sees every call that process makes; `metrics` is where the process records them
    (the API's and the worker's registries differ)."""

    def __init__(self, env: Mapping[str, str], metrics: GatewayMetrics = NO_METRICS) -> None:
        self._by_name = {name: gateway(env, metrics) for name, gateway in _REGISTERED.items()}

    def __getitem__(self, name: str) -> Gateway:
        return self._by_name[name]

    def get(self, name: str) -> Gateway | None:
        return self._by_name.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Gateway]:
        return iter(self._by_name.values())

    def secrets(self) -> tuple[str, ...]:
        return tuple(s for gateway in self for s in gateway.secrets())
