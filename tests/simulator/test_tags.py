"""Servers by tag (reference §23): the simulator's strict body checks and shapes, and the bot's paging client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.cloud import CloudClient, Credentials, Endpoints
from bot.cloud.tags import tag_query_body
from sandbox.simulator import SimulatorServer
from sandbox.simulator.fixtures import FixtureError, load_fixtures

from .conftest import AK, APP_01_A, APP_01_B, DB_01, PROJECT, SK, USER, WEB_01, Cloud, error_of

PATH = f"/v1/{PROJECT}/cloudservers/resource_instances/action"


async def test_filter_by_tag_has_the_documented_shape(cloud: Cloud) -> None:
    response = await cloud.post(PATH, {"action": "filter", "tags": [{"key": "role", "values": ["web"]}]})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "resources": [
            {
                "resource_id": WEB_01,
                "resource_name": "web-01",
                "resource_detail": None,
                "tags": [{"key": "role", "value": "web"}, {"key": "env", "value": "prod"}],
            }
        ],
        "total_count": 1,
    }


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        ({"action": "filter", "tags": [{"key": "role", "values": ["web", "db"]}]}, {WEB_01, DB_01}),
        ({"action": "filter", "tags": [{"key": "env", "values": []}]}, {WEB_01, DB_01}),
        ({"action": "filter", "tags": [{"key": "env"}, {"key": "role", "values": ["db"]}]}, {DB_01}),
        ({"action": "filter", "tags": [{"key": "role"}], "not_tags": [{"key": "env"}]}, {APP_01_A, APP_01_B}),
        ({"action": "filter", "matches": [{"key": "resource_name", "value": "app"}]}, {APP_01_A, APP_01_B}),
        ({"action": "filter", "tags": [{"key": "role", "values": ["nope"]}]}, set()),
    ],
)
async def test_filters(cloud: Cloud, body: dict[str, Any], ids: set[str]) -> None:
    response = await cloud.post(PATH, body)
    assert response.status_code == 200, response.text
    assert {r["resource_id"] for r in response.json()["resources"]} == ids
    assert response.json()["total_count"] == len(ids)


async def test_count_and_server_detail_tags(cloud: Cloud) -> None:
    response = await cloud.post(PATH, {"action": "count", "tags": [{"key": "role"}], "limit": "1", "offset": "1"})
    assert response.json() == {"total_count": 4}  # limit and offset do not apply to count
    assert (await cloud.server(WEB_01))["tags"] == ["role=web", "env=prod"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"action": "list"},
        {"action": "filter", "tags": []},
        {"action": "filter", "tags": [{"key": ""}]},
        {"action": "filter", "tags": [{"key": "a"}, {"key": "a"}]},
        {"action": "filter", "tags": [{"key": "a", "values": ["x", "x"]}]},
        {"action": "filter", "tags": [{"key": "a", "value": "x"}]},
        {"action": "filter", "limit": 10},
        {"action": "filter", "limit": "1001"},
        {"action": "filter", "offset": "-1"},
        {"action": "filter", "matches": [{"key": "name", "value": "web"}]},
        {"action": "filter", "tags_any": [{"key": "a"}]},
    ],
)
async def test_bad_bodies_are_refused(cloud: Cloud, body: dict[str, Any]) -> None:
    response = await cloud.post(PATH, body)
    assert error_of(response) == (400, "Ecs.0005"), response.text


async def test_unsigned_is_refused(cloud: Cloud) -> None:
    response = await cloud.http.post(PATH, json={"action": "count"})
    assert response.status_code == 401


def _fleet_fixtures(tmp_path: Path, n: int) -> Path:
    base = (Path(__file__).resolve().parents[2] / "config" / "simulator.toml").read_text()
    extra = "".join(
        f'\n[[servers]]\nid = "f1ee7000-0000-4000-8000-{i:012d}"\nname = "web-{i + 10:02d}"\n'
        f'image_id = "2e9c6a51-2004-4b7e-9d3f-5a1b8c0d2004"\ntags = {{ role = "web", tier = "t{i % 2}" }}\n'
        for i in range(n)
    )
    path = tmp_path / "fleet.toml"
    path.write_text(base + extra)
    return path


@pytest.fixture
async def big_sim(tmp_path: Path) -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(_fleet_fixtures(tmp_path, 25), seed=1, catalogue_size=0) as server:
        yield server


async def test_client_pages_with_limit_and_offset(big_sim: SimulatorServer) -> None:
    url = big_sim.base_url
    async with CloudClient(Credentials(AK, SK, PROJECT, USER), Endpoints(url, url, url)) as client:  # type: ignore[arg-type]
        servers = await client.servers_by_tag({"role": "web"}, page_size=10)
        odd = await client.servers_by_tag({"role": "web", "tier": "t1"})
        none = await client.servers_by_tag({"role": "nope"})
    assert len(servers) == 26 and len({s.id for s in servers}) == 26
    assert servers[0].name == "web-01" and servers[0].tags == {"role": "web", "env": "prod"}
    assert len(odd) == 12 and all(s.tags["tier"] == "t1" for s in odd)
    assert none == []
    calls = [e for e in big_sim.requests if e["route"] == "list_servers_by_tag"]
    assert [e["status"] for e in calls] == [200] * 5  # 3 pages of 10, then one each


def test_query_body_is_the_documented_shape() -> None:
    assert tag_query_body({"role": "web", "env": None}, name="web", limit=10, offset=20) == (
        b'{"action":"filter","tags":[{"key":"role","values":["web"]},{"key":"env","values":[]}],'
        b'"limit":"10","offset":"20","matches":[{"key":"resource_name","value":"web"}]}'
    )
    with pytest.raises(ValueError, match="at least one tag"):
        tag_query_body({})


def test_fixture_tags_follow_the_ecs_rules(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    base = (Path(__file__).resolve().parents[2] / "config" / "simulator.toml").read_text()
    path.write_text(base.replace('tags = { role = "app" }', 'tags = { role = "a/b" }', 1))
    with pytest.raises(FixtureError, match="tag role=a/b"):
        load_fixtures(path)
