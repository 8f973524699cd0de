"""Products, orders and their current status."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, EmailStr, Field, StringConstraints

from api.auth import AdminCaller, CurrentCaller, DepsDep
from api.errors import Conflict, NotFound
from db.orders import (
    MixedCurrencies,
    NewOrder,
    OutOfStock,
    create_order,
    create_product,
    order_view,
)

router = APIRouter()

Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
MinorUnits = Annotated[int, Field(strict=True, ge=0, le=10**15)]


class ProductIn(BaseModel):
    sku: Sku
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    unit_amount: MinorUnits
    currency: Currency
    stock: Annotated[int, Field(strict=True, ge=0)]


class ItemIn(BaseModel):
    sku: Sku
    quantity: Annotated[int, Field(strict=True, ge=1, le=1000)]


class AttendeeIn(BaseModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    email: EmailStr


class OrderIn(BaseModel):
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=100)]
    provider: Literal["razorpay", "stripe", "standard"]
    attendee: AttendeeIn | None = None


@router.post("/admin/products", status_code=201)
async def add_product(body: ProductIn, _: AdminCaller, deps: DepsDep) -> dict[str, Any]:
    async with deps.sessions.begin() as s:
        if not await create_product(s, body.model_dump()):
            raise Conflict(f"product {body.sku} exists already")
    return body.model_dump()


@router.post("/orders", status_code=201)
async def place_order(body: OrderIn, caller: CurrentCaller, deps: DepsDep) -> dict[str, Any]:
    items: dict[str, int] = {}
    for item in body.items:
        items[item.sku] = items.get(item.sku, 0) + item.quantity
    new = NewOrder(
        customer_id=caller.sub,
        items=items,
        provider=body.provider,
        # Offline mode: the adapter mints an id in the gateway's own shape (no API keys here).
        intent_id=deps.gateway(body.provider).mint_intent_id(),
        attendee_name=body.attendee.name if body.attendee else None,
        attendee_email=str(body.attendee.email) if body.attendee else None,
    )
    try:
        async with deps.sessions.begin() as s:
            order_id = await create_order(s, new)
    except OutOfStock as exc:
        raise Conflict(f"unknown sku or not enough stock: {exc}") from exc
    except MixedCurrencies as exc:
        raise Conflict(f"items are priced in different currencies: {exc}") from exc
    async with deps.sessions() as s:
        view = await order_view(s, order_id)
    assert view is not None
    return view


@router.get("/orders/{order_id}")
async def get_order(order_id: str, caller: CurrentCaller, deps: DepsDep) -> dict[str, Any]:
    try:
        key = uuid.UUID(order_id)
    except ValueError as exc:
        raise NotFound("no such order") from exc
    async with deps.sessions() as s:
        view = await order_view(s, key)
    # Another customer's order is "not found", not "forbidden": its existence is not told.
    if view is None or (view["customer_id"] != caller.sub and not caller.is_admin):
        raise NotFound("no such order")
    return view
