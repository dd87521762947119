"""Read APIs: server details and lists, key pairs, images, volumes — wrappers, field names and types."""

from __future__ import annotations

from .conftest import (
    APP_01_A,
    APP_01_B,
    CATALOGUE,
    DB_01,
    FAILED_01,
    NODISK_01,
    PROJECT,
    ROCKY_LARGE,
    SMALL_01,
    UBUNTU_20,
    UBUNTU_22,
    UBUNTU_24_CI,
    WEB_01,
    WINDOWS_2022,
    Cloud,
    error_of,
    key_option,
)

DETAIL = f"/v1/{PROJECT}/cloudservers/detail"


async def test_server_detail_shape(cloud: Cloud) -> None:
    server = await cloud.server(WEB_01)
    assert server["id"] == WEB_01 and server["name"] == "web-01"
    assert (server["status"], server["OS-EXT-STS:vm_state"], server["OS-EXT-STS:power_state"]) == (
        "ACTIVE",
        "active",
        1,
    )
    assert server["OS-EXT-STS:task_state"] is None and server["locked"] is False
    assert server["image"] == {"id": UBUNTU_20}
    assert server["metadata"]["image_name"] == "ubuntu-20.04" and server["metadata"]["os_type"] == "Linux"
    flavor = server["flavor"]
    assert all(isinstance(flavor[k], str) for k in ("id", "name", "disk", "vcpus", "ram"))
    (volume,) = server["os-extended-volumes:volumes_attached"]
    assert volume["bootIndex"] == "0" and volume["device"] == server["OS-EXT-SRV-ATTR:root_device_name"]
    assert volume["delete_on_termination"] in ("true", "false")
    assert server["key_name"] == "ops-key" and "fault" not in server


async def test_fixture_servers_statuses(cloud: Cloud) -> None:
    assert (await cloud.server(DB_01))["status"] == "SHUTOFF"
    failed = await cloud.server(FAILED_01)
    assert failed["status"] == "ERROR" and failed["OS-EXT-STS:vm_state"] == "error" and failed["fault"]["message"]
    nodisk = await cloud.server(NODISK_01)
    assert [v["bootIndex"] for v in nodisk["os-extended-volumes:volumes_attached"]] == ["-1"]


async def test_list_filters_by_fuzzy_name(cloud: Cloud) -> None:
    body = (await cloud.get(DETAIL, name="app-01")).json()
    assert body["count"] == 2 and {s["id"] for s in body["servers"]} == {APP_01_A, APP_01_B}
    assert (await cloud.get(DETAIL, name="app")).json()["count"] == 2
    assert (await cloud.get(DETAIL, name="a.p-01")).json()["count"] == 2  # `.` matches one character
    assert (await cloud.get(DETAIL, name="zzz")).json() == {"count": 0, "servers": []}


async def test_list_status_filter_includes_transient_states(cloud: Cloud) -> None:
    shutoff = (await cloud.get(DETAIL, status="SHUTOFF")).json()
    assert DB_01 in {s["id"] for s in shutoff["servers"]} and WEB_01 not in {s["id"] for s in shutoff["servers"]}
    assert (await cloud.change_os(DB_01, key_option())).status_code == 200
    again = (await cloud.get(DETAIL, status="SHUTOFF", limit=100)).json()
    rebuilding = [s for s in again["servers"] if s["id"] == DB_01]
    assert rebuilding and rebuilding[0]["status"] == "REBUILD"
    assert [s["id"] for s in (await cloud.get(DETAIL, status="REBUILD")).json()["servers"]] == [DB_01]


async def test_list_pages_with_limit_and_offset_page_numbers(cloud: Cloud) -> None:
    everything = (await cloud.get(DETAIL)).json()
    assert everything["count"] == 21 and len(everything["servers"]) == 21  # the fixtures' servers
    first = (await cloud.get(DETAIL, limit=4, offset=1)).json()
    zero = (await cloud.get(DETAIL, limit=4, offset=0)).json()
    pages = [first] + [(await cloud.get(DETAIL, limit=4, offset=n)).json() for n in range(2, 7)]
    assert first == zero and first["count"] == 21
    assert [len(page["servers"]) for page in pages] == [4, 4, 4, 4, 4, 1]
    ids = [s["id"] for page in pages for s in page["servers"]]
    assert ids == [s["id"] for s in everything["servers"]]
    marker = (await cloud.get(DETAIL, limit=2, marker=first["servers"][-1]["id"])).json()
    assert [s["id"] for s in marker["servers"]] == ids[4:6]


async def test_list_rejects_bad_numbers(cloud: Cloud) -> None:
    assert error_of(await cloud.get(DETAIL, limit="many")) == (400, "Ecs.0005")
    assert error_of(await cloud.get(DETAIL, limit=0)) == (400, "Ecs.0005")


async def test_keypairs(cloud: Cloud) -> None:
    body = (await cloud.get(f"/v2.1/{PROJECT}/os-keypairs")).json()
    names = [item["keypair"]["name"] for item in body["keypairs"]]
    assert names == ["ops-key", "deploy-key"]
    assert set(body["keypairs"][0]["keypair"]) >= {"name", "fingerprint", "public_key", "type"}


async def test_images_filters_and_attributes(cloud: Cloud) -> None:
    (image,) = (await cloud.get("/v2/cloudimages", id=UBUNTU_22)).json()["images"]
    assert image["name"] == "ubuntu-22.04" and image["status"] == "active" and image["__os_type"] == "Linux"
    assert image["__support_fc_inject"] == "true" and image["min_disk"] == 40 and isinstance(image["min_ram"], int)
    (cloud_init,) = (await cloud.get("/v2/cloudimages", name="ubuntu-24.04-cloudinit")).json()["images"]
    assert cloud_init["id"] == UBUNTU_24_CI and "__support_fc_inject" not in cloud_init
    windows = (await cloud.get("/v2/cloudimages", __os_type="Windows")).json()["images"]
    assert WINDOWS_2022 in [i["id"] for i in windows] and {i["__os_type"] for i in windows} == {"Windows"}
    queued = (await cloud.get("/v2/cloudimages", status="queued")).json()["images"]
    assert "centos-7-old" in [i["name"] for i in queued] and {i["status"] for i in queued} == {"queued"}
    (large,) = (await cloud.get("/v2/cloudimages", id=ROCKY_LARGE)).json()["images"]
    assert large["min_disk"] == 100
    assert (await cloud.get("/v2/cloudimages", id="nope")).json() == {"images": []}


async def test_images_paging(cloud: Cloud) -> None:
    all_ids = [i["id"] for i in (await cloud.get("/v2/cloudimages")).json()["images"]]
    assert len(all_ids) == 7 + CATALOGUE
    page = (await cloud.get("/v2/cloudimages", limit=2, marker=all_ids[1])).json()["images"]
    assert [i["id"] for i in page] == all_ids[2:4]


async def test_volume_sizes_for_min_disk(cloud: Cloud) -> None:
    small = await cloud.server(SMALL_01)
    system_id = small["os-extended-volumes:volumes_attached"][0]["id"]
    volume = (await cloud.get(f"/v2/{PROJECT}/cloudvolumes/{system_id}")).json()["volume"]
    assert volume["id"] == system_id and volume["size"] == 20 and volume["bootable"] == "true"
    assert volume["status"] == "in-use" and volume["attachments"][0]["server_id"] == SMALL_01
    data_id = "8b1d2e3f-0000-4a00-9000-000000000202"
    data = (await cloud.get(f"/v2/{PROJECT}/cloudvolumes/{data_id}")).json()["volume"]
    assert data["bootable"] == "false" and data["size"] == 200
    missing = await cloud.get(f"/v2/{PROJECT}/cloudvolumes/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
