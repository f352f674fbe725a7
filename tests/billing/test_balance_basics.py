import httpx

from tests.conftest import World


async def test_new_user_starts_on_free_with_its_monthly_grant(
    client: httpx.AsyncClient, world: World
) -> None:
    alice = await world.user()
    response = await client.get("/user/payment/balance", headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert body["map_id"] == alice.id
    assert body["monthly_api_credits_remaining_monetary_value"] == "10.00"
    assert body["monthly_api_credits_remaining"] == 20
    assert body["stable_api_credits_remaining_monetary_value"] == "0.00"
    assert body["total_due"] == "0.00"
    assert body["subscription_details"]["modeling_app"]["name"] == "free"
    assert response.headers["x-api-call-id"]


async def test_staff_put_then_get_returns_exactly_what_was_set(
    client: httpx.AsyncClient, world: World
) -> None:
    staff = await world.user(staff=True)
    admin = await world.user()
    org = await world.org(admin)
    put = await client.put(
        f"/orgs/{org.id}/payment/balance",
        headers=staff.headers,
        json={
            "monthly_api_credits_remaining_monetary_value": 84.34,
            "stable_api_credits_remaining_monetary_value": "19.000001",
        },
    )
    assert put.status_code == 200, put.text
    got = await client.get(f"/orgs/{org.id}/payment/balance", headers=staff.headers)
    assert got.json()["monthly_api_credits_remaining_monetary_value"] == "84.34"
    assert got.json()["stable_api_credits_remaining_monetary_value"] == "19.000001"
    assert got.json()["subscription_details"] is None
    assert got.json()["monthly_api_credits_remaining"] == 0
