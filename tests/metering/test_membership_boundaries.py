"""An org pays for, and sees, only the calls a user made while its member (issue 7, part 2).

A call belongs to the org the user was in when it *started*: one made before joining stays
the user's however late it is reported; one made after leaving finds no membership."""

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import Clock, Person, World
from tests.metering.conftest import Meter, balance_of

STABLE = "stable_api_credits_remaining_monetary_value"
MONTHLY = "monthly_api_credits_remaining_monetary_value"


async def listed(client: httpx.AsyncClient, path: str, person: Person) -> list[str]:
    response = await client.get(path, headers=person.headers)
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


async def reported(meter: Meter, call: dict[str, Any]) -> dict[str, Any]:
    response = await meter.report(call)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_calls_before_joining_and_after_leaving_stay_with_the_user(
    client: httpx.AsyncClient, world: World, meter: Meter, clock: Clock, engine: AsyncEngine
) -> None:
    staff, admin, uma = await world.user(staff=True), await world.user(), await world.user()
    org = await world.org(admin)
    await client.put(f"/orgs/{org.id}/payment/balance", headers=staff.headers, json={STABLE: "10"})
    before_joining = clock.now.isoformat()
    clock.advance(minutes=10)
    invited = await client.post(
        "/org/members", headers=admin.headers, json={"email": uma.email, "role": "member"}
    )
    accepted = await client.post(
        f"/user/org-invitations/{invited.json()['id']}/accept", headers=uma.headers
    )
    assert accepted.status_code == 200, accepted.text

    # Started before she joined, reported after: hers, not the org's.
    early = await reported(meter, meter.call(uma.id, started_at=before_joining, price="1"))
    assert early["org_id"] is None
    named = await meter.report(
        meter.call(uma.id, started_at=before_joining, org_id=org.id, price="1")
    )
    assert named.status_code == 400
    assert "when the call started" in named.json()["message"]
    # Started the instant she joined and later: the org's.
    at_joining = await reported(meter, meter.call(uma.id, price="2"))
    clock.advance(minutes=1)
    member_call = await reported(meter, meter.call(uma.id, price="3"))
    assert at_joining["org_id"] == member_call["org_id"] == org.id

    clock.advance(minutes=1)
    left = await client.delete("/org/membership", headers=uma.headers)
    assert left.status_code == 204
    clock.advance(minutes=1)
    after_leaving = await reported(meter, meter.call(uma.id, price="4"))
    assert after_leaving["org_id"] is None

    org_calls = await listed(client, "/org/api-calls", admin)
    assert sorted(org_calls) == sorted([at_joining["id"], member_call["id"]])
    for call in (early, after_leaving):
        response = await client.get(f"/org/api-calls/{call['id']}", headers=admin.headers)
        assert response.status_code == 404
    own = await listed(client, "/user/api-calls", uma)
    assert sorted(own) == sorted(c["id"] for c in (early, at_joining, member_call, after_leaving))

    # Money followed the same line: the org paid 2 + 3, Uma 1 + 4 from her free $10.
    org_balance = await balance_of(client, staff.headers, f"/orgs/{org.id}/payment/balance")
    assert org_balance[STABLE] == "5.00"
    own_balance = await balance_of(client, staff.headers, f"/users/{uma.id}/payment/balance")
    assert own_balance[MONTHLY] == "5.00"


async def test_a_call_of_an_invited_but_not_joined_user_is_theirs(
    client: httpx.AsyncClient, world: World, meter: Meter, clock: Clock
) -> None:
    admin, vic = await world.user(), await world.user()
    await world.org(admin)
    await client.post(
        "/org/members", headers=admin.headers, json={"email": vic.email, "role": "member"}
    )
    call = await reported(meter, meter.call(vic.id))
    assert call["org_id"] is None
    assert await listed(client, "/org/api-calls", admin) == []
    authorization = await meter.authorize(vic.id)
    assert authorization.json()["customer_kind"] == "user"


async def test_a_member_who_rejoins_is_billed_from_rejoining(
    client: httpx.AsyncClient, world: World, meter: Meter, clock: Clock
) -> None:
    admin, wes = await world.user(), await world.user()
    org = await world.org(admin, wes)
    first = await reported(meter, meter.call(wes.id))
    assert first["org_id"] == org.id
    clock.advance(minutes=1)
    assert (await client.delete("/org/membership", headers=wes.headers)).status_code == 204
    between = clock.now
    clock.advance(minutes=1)
    invited = await client.post(
        "/org/members", headers=admin.headers, json={"email": wes.email, "role": "member"}
    )
    path = f"/user/org-invitations/{invited.json()['id']}/accept"
    assert (await client.post(path, headers=wes.headers)).status_code == 200
    gap = await reported(
        meter, meter.call(wes.id, started_at=(between + timedelta(seconds=1)).isoformat())
    )
    assert gap["org_id"] is None
    assert sorted(await listed(client, "/org/api-calls", admin)) == [first["id"]]
