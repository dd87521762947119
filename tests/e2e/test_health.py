"""/healthz tells a load balancer and a person what this process is: its tracker role and its database's state."""

from __future__ import annotations

import httpx

from sandbox.devtools.stack import LocalStack
from tests.support.waiting import until


async def test_health_names_the_role_and_the_database(stack: LocalStack) -> None:
    async with httpx.AsyncClient(timeout=5.0) as client:

        async def leading() -> httpx.Response | None:
            response = await client.get(stack.url + "/healthz")
            return response if response.json()["role"] == "leader" else None

        response = await until(leading, timeout=10, what="the tracker to lead")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True and body["tracker_lease"] is True and body["live_requests"] == 0
    assert body["database"] == {
        "engine": "sqlite",
        "where": str(stack.rt.settings.db_path),
        "state": "ok",
        "problem": None,
    }
