"""Products (ticket types, seats): an admin adds them and withdraws stock."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter
from pydantic import AfterValidator, Field, StringConstraints, model_validator

from api.auth import AdminCaller, DepsDep
from api.errors import Conflict, NotFound
from api.fields import Currency, MinorUnits, Name, Sku, VendorId, storable
from api.schemas import Product, RequestBody, Withdrawn
from db.orders import create_product
from db.stock import UNFULFILLABLE, WithdrawRefused, withdraw_stock
from domain.payments import RefundRun
from workflows.refund_client import start_refund

log = logging.getLogger("paysaga.orders")
router = APIRouter()


class ProductIn(RequestBody):
    sku: Sku
    name: Name
    unit_amount: MinorUnits
    currency: Currency
    stock: Annotated[int, Field(strict=True, ge=0)]
    vendor: VendorId | None = None  # whose vendor tokens see and answer its orders
    requires_acceptance: Annotated[bool, Field(strict=True)] = False

    @model_validator(mode="after")
    def _someone_accepts(self) -> ProductIn:
        if self.requires_acceptance and self.vendor is None:
            raise ValueError("requires_acceptance needs a vendor to accept")
        return self


@router.post("/admin/products", status_code=201)
async def add_product(body: ProductIn, _: AdminCaller, deps: DepsDep) -> Product:
    async with deps.sessions.begin() as s:
        if not await create_product(s, body.model_dump()):
            raise Conflict(f"product {body.sku} exists already")
    return Product.model_validate(body.model_dump())


class WithdrawIn(RequestBody):
    quantity: Annotated[int, Field(strict=True, ge=1, le=10**9)]
    reason: Annotated[
        str, StringConstraints(min_length=1, max_length=2000), AfterValidator(storable)
    ]


@router.post("/admin/products/{sku}/withdraw")
async def withdraw_product_stock(
    sku: Sku, body: WithdrawIn, caller: AdminCaller, deps: DepsDep
) -> Withdrawn:
    """Takes `quantity` units away (lost, damaged, a smaller room): first from what is on
    sale; the rest from the orders holding it, newest first, unpaid ones cancelled, paid
    ones refunded in full (`requested_by: system:unfulfillable`). 404 unknown sku; 409 more
    than it was stocked with."""
    admin = f"admin:{caller.sub}"
    try:
        async with deps.sessions.begin() as s:
            done = await withdraw_stock(s, sku, body.quantity, admin=admin, reason=body.reason)
    except WithdrawRefused as exc:
        raise Conflict(str(exc)) from exc
    if done is None:
        raise NotFound(f"no product {sku}")
    for order_id in done.cancelled:
        await deps.tell_closed(order_id, "admin")
    temporal = await deps.temporal()
    for _, asked in done.refunds:
        # Temporal down: the refund stays pending; POST /orders/{id}/refund (admin) starts it.
        await start_refund(
            temporal,
            deps.settings.task_queue,
            RefundRun(asked.provider, asked.transaction_id, UNFULFILLABLE),
        )
    return Withdrawn(
        sku=done.sku,
        quantity=done.quantity,
        from_stock=done.from_stock,
        cancelled=done.cancelled,
        refunded=[o for o, _ in done.refunds],
        owed=done.owed,
    )
