"""Change OS refused as the cloud refuses it: image kind, architecture, firmware, virtualization, disk, Windows, and
key pairs that belong to another user. Each [U] reading (at once or as a failed job) is a switch; both are covered."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.simulator import ManualClock, SimulatorServer

from .conftest import (
    ARM_01,
    DB_01,
    HCE_ARM,
    OTHER_USER,
    PROJECT,
    ROCKY_LARGE,
    SMALL_01,
    UBUNTU_22,
    UBUNTU_24_CI,
    USER,
    Cloud,
    error_of,
    key_option,
)


async def _find(cloud: Cloud, predicate: Any = None, **query: str) -> dict[str, Any]:
    images = (await cloud.get("/v2/cloudimages", limit=1000, status="active", **query)).json()["images"]
    found = [i for i in images if predicate is None or predicate(i)]
    if "__os_type" not in query:  # a key pair is refused for Windows images whatever else is wrong
        found = [i for i in found if i["__os_type"] != "Windows"]
    assert found, query
    return found[0]


def _x86(image: dict[str, Any]) -> bool:
    """An x86 image for the v1 API."""
    return image["__support_arm"] == "false" and image.get("__support_fc_inject") == "true"


def _arm_bios(image: dict[str, Any]) -> bool:
    return image["__support_arm"] == "true" and image.get("hw_firmware_type", "bios") == "bios"


async def _cases(cloud: Cloud) -> list[tuple[str, str, str, str, bool]]:
    """(what, server, image, code, v2): the API version the image's __support_fc_inject asks for."""
    bms = await _find(cloud, _x86, virtual_env_type="Ironic")
    data = await _find(cloud, virtual_env_type="DataImage")
    iso = await _find(cloud, virtual_env_type="IsoImage")
    arm_bios = await _find(cloud, _arm_bios, virtual_env_type="FusionCompute")
    v2 = {i["id"]: i.get("__support_fc_inject") != "true" for i in (bms, data, iso, arm_bios)}
    return [
        ("BMS image", DB_01, bms["id"], "Ecs.0007", v2[bms["id"]]),
        ("data-disk image", DB_01, data["id"], "Ecs.0007", v2[data["id"]]),
        ("ISO image", DB_01, iso["id"], "Ecs.0007", v2[iso["id"]]),
        ("ARM image on x86", DB_01, HCE_ARM, "Ecs.0005", False),
        ("x86 image on ARM", ARM_01, UBUNTU_22, "Ecs.0005", False),
        ("BIOS image on ARM", ARM_01, arm_bios["id"], "Ecs.0005", v2[arm_bios["id"]]),
        ("min_disk above the system disk", SMALL_01, ROCKY_LARGE, "Ecs.0007", False),
    ]


async def test_incompatible_images_refused_at_once_with_sync_reading(cloud: Cloud, sim: SimulatorServer) -> None:
    assert (await cloud.http.post("/_sim/switches", json={"incompatible_image": "sync"})).status_code == 200
    for what, server_id, image_id, code, v2 in await _cases(cloud):
        response = await cloud.change_os(server_id, key_option(image_id), v2=v2)
        assert error_of(response) == (400, code), (what, response.text)
        assert response.json()["error"]["message"]
    assert sim.state.jobs == {}


async def test_incompatible_images_fail_the_job_with_job_reading(cloud: Cloud, clock: ManualClock) -> None:
    for what, server_id, image_id, code, v2 in await _cases(cloud):
        before = await cloud.server(server_id)
        response = await cloud.change_os(server_id, key_option(image_id), v2=v2)
        assert response.status_code == 200, (what, response.text)
        clock.advance(60)
        job = await cloud.job(response.json()["job_id"])
        assert (job["status"], job["error_code"]) == ("FAIL", code), what
        assert job["fail_reason"]
        after = await cloud.server(server_id)
        assert after["image"] == before["image"] and after["status"] == "SHUTOFF", "failed before the disk"


async def test_a_fitting_arm_image_changes_the_arm_server(cloud: Cloud, clock: ManualClock) -> None:
    response = await cloud.change_os(ARM_01, key_option(HCE_ARM))
    assert response.status_code == 200, response.text
    clock.advance(400)
    assert (await cloud.job(response.json()["job_id"]))["status"] == "SUCCESS"
    assert (await cloud.server(ARM_01))["image"] == {"id": HCE_ARM}


async def test_xen_flavor_needs_an_image_that_supports_xen() -> None:
    from sandbox.simulator.fixtures import load_fixtures

    fixtures = load_fixtures()
    servers = [s.model_copy(update={"flavor": "s1.large.2"}) if s.name == "db-01" else s for s in fixtures.servers]
    async with SimulatorServer(
        fixtures.model_copy(update={"servers": servers}), clock=ManualClock(), catalogue_size=60
    ) as sim:
        cloud = Cloud(sim.base_url)
        try:
            await cloud.http.post("/_sim/switches", json={"incompatible_image": "sync"})
            response = await cloud.change_os(DB_01, key_option(UBUNTU_22))  # __support_xen false
            assert error_of(response) == (400, "Ecs.0005") and "Xen" in response.json()["error"]["message"]
            xen = await _find(cloud, _x86, virtual_env_type="FusionCompute", __support_xen="true")
            assert (await cloud.change_os(DB_01, key_option(xen["id"]))).status_code == 200
        finally:
            await cloud.aclose()


# ---------------------------------------------------------------------------------------------- Windows


async def test_windows_on_v1_is_refused_by_default_and_allowed_by_the_switch(cloud: Cloud) -> None:
    windows = await _find(cloud, lambda i: i["__support_arm"] == "false", __os_type="Windows")
    option = {"adminpass": "Blue-Kettle-42", "imageid": windows["id"]}
    response = await cloud.change_os(DB_01, option)
    assert error_of(response) == (400, "Ecs.0007") and "Windows" in response.json()["error"]["message"]
    await cloud.http.post("/_sim/switches", json={"windows_v1": "allow"})
    assert (await cloud.change_os(DB_01, option)).status_code == 200


# ---------------------------------------------------------------------------------------------- __support_fc_inject


async def test_fc_inject_reading_switch(cloud: Cloud) -> None:
    assert error_of(await cloud.change_os(DB_01, key_option(UBUNTU_24_CI))) == (400, "Ecs.0007")
    await cloud.http.post("/_sim/switches", json={"fc_inject": "any"})
    assert (await cloud.change_os(DB_01, key_option(UBUNTU_24_CI))).status_code == 200, "v1 takes a Cloud-Init image"


async def test_fc_inject_any_reading_also_lets_v2_take_a_v1_image(cloud: Cloud) -> None:
    await cloud.http.post("/_sim/switches", json={"fc_inject": "any"})
    assert (await cloud.change_os(DB_01, key_option(UBUNTU_22), v2=True)).status_code == 200


# ---------------------------------------------------------------------------------------------- key pairs


async def test_keypair_listing_shows_only_the_callers_pairs(cloud: Cloud) -> None:
    body = (await cloud.get(f"/v2.1/{PROJECT}/os-keypairs")).json()
    assert [item["keypair"]["name"] for item in body["keypairs"]] == ["ops-key", "deploy-key"]


@pytest.mark.parametrize("userid", [USER, "ffffffffffffffffffffffffffffffff"])
async def test_another_users_key_pair_is_refused(cloud: Cloud, sim: SimulatorServer, userid: str) -> None:
    response = await cloud.change_os(DB_01, {"keyname": "alice-key", "userid": userid, "imageid": UBUNTU_22})
    assert error_of(response) == (400, "Ecs.0314") and "alice-key" in response.json()["error"]["message"]
    ours = await cloud.change_os(DB_01, {"keyname": "ops-key", "userid": OTHER_USER, "imageid": UBUNTU_22})
    assert error_of(ours) == (400, "Ecs.0314"), "ops-key is not the other user's"
    assert sim.state.jobs == {}


async def test_the_owner_may_use_the_pair(cloud: Cloud) -> None:
    response = await cloud.change_os(DB_01, {"keyname": "alice-key", "userid": OTHER_USER, "imageid": UBUNTU_22})
    assert response.status_code == 200, response.text


async def test_foreign_key_pair_as_a_failed_job_reading(cloud: Cloud, clock: ManualClock) -> None:
    await cloud.http.post("/_sim/switches", json={"foreign_keypair": "job"})
    response = await cloud.change_os(DB_01, {"keyname": "alice-key", "userid": USER, "imageid": UBUNTU_22})
    assert response.status_code == 200, response.text
    clock.advance(60)
    job = await cloud.job(response.json()["job_id"])
    assert (job["status"], job["error_code"]) == ("FAIL", "Ecs.0314")
    server = await cloud.server(DB_01)
    assert server["key_name"] == "ops-key" and server["image"]["id"] != UBUNTU_22
    unknown = await cloud.change_os(DB_01, key_option(keyname="nobody-key"))
    assert error_of(unknown) == (400, "Ecs.0314"), "a pair that does not exist is refused at once either way"
