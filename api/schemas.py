"""Request bodies, and the answers only the HTTP layer gives (the views customers and
operators share are in `domain.views`; the error body is `api.errors.ErrorBody`)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict

from domain.statuses import WebhookResult


class Answer(BaseModel):
    """The schema says what every answer holds: each field, a defaulted one too, no other."""

    model_config = ConfigDict(extra="forbid", json_schema_serialization_defaults_required=True)


class Alive(Answer):
    status: Literal["ok"] = "ok"


class Readiness(Answer):
    """200 when every dependency answers, else 503 with the same body naming what failed."""

    ready: bool
    database: str  # "ok", or "unavailable: <why>"
    schema_revision: str  # "ok", or where the schema is and what to run
    temporal: str
    search_attributes: str  # "ok", or each missing one with the command that registers it


class WebhookAnswer(Answer):
    """`ignored`: a valid event paysaga does not act on; `duplicate`: told before."""

    result: Literal[WebhookResult.ACCEPTED, WebhookResult.DUPLICATE, WebhookResult.IGNORED]


class Processing(Answer):
    """A checkout return not confirmed within the short wait: the workflow goes on alone."""

    status: Literal["processing"] = "processing"
    order_id: uuid.UUID
    workflow_id: str


class Product(Answer):
    sku: str
    name: str
    unit_amount: int
    currency: str
    stock: int
    vendor: str | None
    requires_acceptance: bool


class Withdrawn(Answer):
    sku: str
    quantity: int
    from_stock: int  # taken from what was on sale
    cancelled: list[uuid.UUID]  # unpaid orders, cancelled
    refunded: list[uuid.UUID]  # paid orders, their full refunds started
    owed: int  # still to be written off as those orders are cancelled or refunded


class RequestBody(BaseModel):
    """Every request body: a field it does not declare is refused (422 naming it), never
    dropped without a word (a misspelled `requires_acceptance` would otherwise be lost)."""

    model_config = ConfigDict(extra="forbid")
