"""Plans and balances set through the staff API."""

from typing import Any

import httpx

from tests.conftest import Person
from tests.support.http import ok

ENTERPRISE_PRICE = {"type": "per_user", "interval": "month", "price": "1234.56"}


async def set_monthly(client: httpx.AsyncClient, staff: Person, path: str, amount: str) -> None:
    body = {"monthly_api_credits_remaining_monetary_value": amount}
    put = await ok(await client.put(f"{path}/payment/balance", headers=staff.headers, json=body))
    assert put["monthly_api_credits_remaining_monetary_value"] == amount


async def set_enterprise_price(
    client: httpx.AsyncClient, staff: Person, org_id: str, price: dict[str, str]
) -> dict[str, Any]:
    url = f"/orgs/{org_id}/enterprise/pricing"
    result: dict[str, Any] = await ok(await client.put(url, headers=staff.headers, json=price))
    return result
