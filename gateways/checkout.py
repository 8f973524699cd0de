"""The customer's browser back from a gateway's checkout: what the return carries and how a
gateway proves it paid. `api.payments` drives every gateway's return the same way: check the
proof (no I/O), find the customer's attempt by its intent id, then the confirmation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from pydantic import BaseModel

from domain.payments import Confirmation


class NotVerifiable(Exception):
    """This server cannot check such a return (offline mode): 409, retrying will not help."""


class AwaitingWebhook(Exception):
    """The proof is good, but only the gateway's webhook can say the money was captured
    (no API to ask): 202 until it has."""


class NotSucceeded(Exception):
    """The gateway says the payment has not succeeded (yet): 409."""


class UnknownIntent(Exception):
    """The gateway knows no such intent: 404."""


@dataclass(frozen=True)
class Attempt:
    """What the database knows of the attempt the return names."""

    order_id: str
    amount: int
    currency: str


class CheckoutReturn(ABC):
    body: type[BaseModel]  # the request body this gateway's return carries

    @abstractmethod
    def intent_id(self, body: BaseModel) -> str:
        """The attempt's intent id the return names."""

    def transaction_id(self, body: BaseModel) -> str | None:
        """The payment the return names, where it names one (None: only the gateway knows).
        A payment stored as paid under it is not asked about again."""
        return None

    @abstractmethod
    def check(self, body: BaseModel) -> None:
        """Raises NotVerifiable, or SignatureError (400, a security event), before anything is
        read: a forged return learns nothing."""

    @abstractmethod
    async def confirmation(self, body: BaseModel, attempt: Attempt, now: float) -> Confirmation:
        """The payment the return proves, as its webhook would report it. Raises
        NotSucceeded, UnknownIntent, AwaitingWebhook or GatewayUnavailable."""
