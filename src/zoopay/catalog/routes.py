from pydantic import BaseModel

from zoopay.api.deps import CatalogDep
from zoopay.api.routing import json_router
from zoopay.catalog.schemas import PricingSubscriptions

router = json_router(tags=["meta"])


@router.get("/pricing/subscriptions", response_model=PricingSubscriptions)
async def get_pricing_subscriptions(catalog: CatalogDep) -> PricingSubscriptions:
    """Every plan on offer, with its price and monthly credits. No token needed."""
    return PricingSubscriptions.of(catalog)


class Pong(BaseModel):
    message: str


@router.get("/ping", response_model=Pong)
async def ping() -> Pong:
    """Is the server up? No token needed."""
    return Pong(message="pong")
