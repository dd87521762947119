"""The IMS catalogue over signed HTTP: a realistic region, the documented filters, marker paging, the [U] switches."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sandbox.simulator import ManualClock, SimulatorServer
from sandbox.simulator.catalogue import generate

from .conftest import HCE_ARM, PROJECT, UBUNTU_20, UBUNTU_22, WINDOWS_2022, Cloud, error_of

IMAGES = "/v2/cloudimages"
REALISTIC = 2500


@pytest.fixture
async def big() -> AsyncIterator[Cloud]:
    async with SimulatorServer(seed=1, clock=ManualClock(), catalogue_size=REALISTIC) as sim:
        client = Cloud(sim.base_url)
        yield client
        await client.aclose()


async def _images(cloud: Cloud, **query: str | int) -> list[dict[str, Any]]:
    response = await cloud.get(IMAGES, **query)
    assert response.status_code == 200, response.text
    return response.json()["images"]


async def _everything(cloud: Cloud, page: int = 500, **query: str | int) -> list[dict[str, Any]]:
    """Follow `marker` to the end, as a client must."""
    out: list[dict[str, Any]] = []
    marker: dict[str, str] = {}
    while True:
        batch = await _images(cloud, limit=page, **marker, **query)
        out.extend(batch)
        if len(batch) < page:
            return out
        marker = {"marker": batch[-1]["id"]}


async def _switch(cloud: Cloud, **values: Any) -> None:
    response = await cloud.http.post("/_sim/switches", json=values)
    assert response.status_code == 200, response.text


def test_generation_is_seeded_and_has_every_kind() -> None:
    images = generate(REALISTIC, 0, PROJECT)
    assert images == generate(REALISTIC, 0, PROJECT) and images != generate(REALISTIC, 1, PROJECT)
    assert len({i.id for i in images}) == REALISTIC
    kinds = {(i.imagetype, i.virtual_env_type, i.architecture, i.boot_firmware, i.status) for i in generate(30, 5, "p")}
    for want in ("gold", "private", "shared", "market"):
        assert any(k[0] == want for k in kinds), want
    for want in ("FusionCompute", "Ironic", "DataImage", "IsoImage"):
        assert any(k[1] == want for k in kinds), want
    assert {k[2] for k in kinds} == {"x86", "arm"} and {k[3] for k in kinds} == {"bios", "uefi"}
    assert {"queued", "saving", "killed", "active"} <= {k[4] for k in kinds}
    names = {i.name for i in images}
    for public in ("Ubuntu 22.04 server 64bit", "CentOS 7.9 64bit", "Windows Server 2019 Datacenter 64bit English"):
        assert public in names
    assert "Huawei Cloud EulerOS 2.0 Standard 64 bit (ARM)" in names and "EulerOS 2.9 64bit" in names
    private = [i for i in images if i.imagetype == "private"]
    assert 0 < len(private) <= 50 and {i.owner for i in private} == {PROJECT}, "private images fit the quota"


async def test_a_realistic_region_pages_to_the_end_without_duplicates(big: Cloud) -> None:
    everything = await _everything(big)
    ids = [i["id"] for i in everything]
    assert len(ids) == len(set(ids)) == REALISTIC + 7, "curated images stay beside the generated ones"
    assert {UBUNTU_22, UBUNTU_20, WINDOWS_2022, HCE_ARM} <= set(ids)
    first = await _images(big)
    assert len(first) == 500, "limit defaults to 500"
    stamps = [i["created_at"] for i in first]
    assert stamps == sorted(stamps, reverse=True), "default order: created_at desc"
    assert {i["__imagetype"] for i in everything} == {"gold", "private", "shared", "market"}
    arm = [i for i in everything if i["__support_arm"] == "true"]
    assert arm and all(i.get("hw_firmware_type") in ("uefi", "bios") for i in arm)
    assert all("architecture" not in i for i in everything[:50]), "ImageInfo has no architecture; __support_arm"


FILTERS: list[dict[str, str]] = [
    {"__imagetype": "gold"},
    {"__imagetype": "private"},
    {"__imagetype": "shared"},
    {"__imagetype": "market"},
    {"status": "queued"},
    {"status": "killed"},
    {"status": "saving"},
    {"virtual_env_type": "Ironic"},
    {"virtual_env_type": "DataImage"},
    {"virtual_env_type": "IsoImage"},
    {"__os_type": "Windows"},
    {"__platform": "Ubuntu"},
    {"__os_bit": "64"},
    {"visibility": "shared"},
    {"member_status": "pending"},
    {"__support_xen": "true"},
    {"__support_largememory": "true"},
    {"disk_format": "iso"},
    {"min_disk": "40"},
    {"name": "CentOS 7.9 64bit"},
    {"tag": "chatops=backup"},
    {"owner": PROJECT},
    {"__isregistered": "true"},
]


def _matches(image: dict[str, Any], key: str, value: str) -> bool:
    if key == "tag":
        return value in image["tags"]
    return str(image.get(key)).lower() == value.lower()


@pytest.mark.parametrize("flt", FILTERS, ids=["=".join(next(iter(f.items()))) for f in FILTERS])
async def test_each_filter_returns_only_and_all_that_it_names(big: Cloud, flt: dict[str, str]) -> None:
    everything = await _everything(big, page=1000)
    ((key, value),) = flt.items()
    expected = {i["id"] for i in everything if _matches(i, key, value)}
    got = await _everything(big, page=1000, **flt)
    assert expected and {i["id"] for i in got} == expected and len(got) == len(expected)


async def test_filters_combine(big: Cloud) -> None:
    query = {"__imagetype": "gold", "virtual_env_type": "FusionCompute", "status": "active", "__os_type": "Linux"}
    got = await _everything(big, **query)
    assert got
    for image in got:
        assert (image["__imagetype"], image["virtual_env_type"], image["status"], image["__os_type"]) == (
            "gold",
            "FusionCompute",
            "active",
            "Linux",
        )
    fewer = await _everything(big, **query, __platform="CentOS")
    assert 0 < len(fewer) < len(got) and {i["__platform"] for i in fewer} == {"CentOS"}


async def test_created_at_ranges(big: Cloud) -> None:
    newer = await _everything(big, created_at="gte:2024-01-01T00:00:00Z")
    older = await _everything(big, created_at="lt:2024-01-01T00:00:00Z")
    assert newer and older and len(newer) + len(older) == REALISTIC + 7
    assert all(i["created_at"] >= "2024-01-01" for i in newer) and all(i["created_at"] < "2024" for i in older)
    assert error_of(await big.get(IMAGES, created_at="after:2024")) == (400, "IMG.0001")


async def test_flavor_id_lists_public_ecs_images_for_that_flavor(big: Cloud) -> None:
    arm = await _everything(big, flavor_id="kc1.large.2")
    assert arm and all(
        i["__imagetype"] == "gold"
        and i["virtual_env_type"] == "FusionCompute"
        and i["__support_arm"] == "true"
        and i["hw_firmware_type"] == "uefi"
        for i in arm
    )
    xen = await _everything(big, flavor_id="s1.large.2")
    assert xen and all(i["__support_xen"] == "true" and i["__support_arm"] == "false" for i in xen)
    assert error_of(await big.get(IMAGES, flavor_id="zz9.huge.1")) == (400, "IMG.0192")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"__imagetype": "public"}, "IMG.0001"),
        ({"status": "ACTIVE"}, "IMG.0001"),
        ({"virtual_env_type": "KVM"}, "IMG.0001"),
        ({"__isregistered": "false"}, "IMG.0001"),
        ({"architecture": "aarch64"}, "IMG.0212"),
        ({"limit": "0"}, "IMG.0001"),
        ({"limit": "1001"}, "IMG.0001"),
        ({"limit": "many"}, "IMG.0001"),
        ({"sort_key": "os"}, "IMG.0001"),
        ({"sort_dir": "up"}, "IMG.0001"),
        ({"marker": "no-such-image"}, "IMG.0001"),
        ({"min_disk": "big"}, "IMG.0001"),
        ({"__support_arm": "true"}, "IMG.0001"),  # a response field, not a query filter
        ({"hw_firmware_type": "uefi"}, "IMG.0001"),
        ({"enterprise_project_id": "mine"}, "IMG.0001"),
    ],
)
async def test_invalid_values_are_refused(cloud: Cloud, query: dict[str, str], code: str) -> None:
    response = await cloud.get(IMAGES, **query)
    assert error_of(response) == (400, code), response.text
    assert response.json()["error"]["message"]


async def test_unknown_parameters_switch(cloud: Cloud) -> None:
    assert error_of(await cloud.get(IMAGES, __support_arm="true")) == (400, "IMG.0001")
    await _switch(cloud, images_unknown_params="ignore")
    ignored = await _images(cloud, __support_arm="true")
    assert {i["__support_arm"] for i in ignored} == {"true", "false"}, "ignored: the filter does nothing"


async def test_architecture_filter_switch_covers_each_reading(cloud: Cloud) -> None:
    everything = await _everything(cloud)
    ignored = await _everything(cloud, architecture="arm")
    assert len(ignored) == len(everything), "default: ignored, as a region without it in its template may"
    await _switch(cloud, architecture_filter="honour")
    arm = await _everything(cloud, architecture="arm")
    assert arm and {i["__support_arm"] for i in arm} == {"true"} and HCE_ARM in {i["id"] for i in arm}
    await _switch(cloud, architecture_filter="refuse")
    assert error_of(await cloud.get(IMAGES, architecture="arm")) == (400, "IMG.0001")


async def test_marker_paging_in_every_sort_order(cloud: Cloud) -> None:
    for sort_key, sort_dir in itertools.product(("name", "created_at", "id", "size", "status"), ("asc", "desc")):
        whole = [i["id"] for i in await _images(cloud, limit=1000, sort_key=sort_key, sort_dir=sort_dir)]
        paged = [i["id"] for i in await _everything(cloud, page=7, sort_key=sort_key, sort_dir=sort_dir)]
        assert paged == whole, (sort_key, sort_dir)
    names = [i["name"] for i in await _images(cloud, sort_key="name", sort_dir="asc")]
    assert names == sorted(names)
    # a marker need not match the filters: paging goes on from its place in the order
    marker = (await _images(cloud, sort_key="name", sort_dir="asc", limit=1))[0]["id"]
    linux = await _images(cloud, sort_key="name", sort_dir="asc", __os_type="Linux", marker=marker)
    assert all(i["__os_type"] == "Linux" for i in linux)


async def test_page_link_switch(cloud: Cloud) -> None:
    body = (await cloud.get(IMAGES, limit=5)).json()
    assert set(body) == {"images"}, "default: no paging hint; page with the last id until a short page"
    await _switch(cloud, images_page_link="page_info")
    body = (await cloud.get(IMAGES, limit=5)).json()
    assert body["page_info"] == {"next_marker": body["images"][-1]["id"]}
    await _switch(cloud, images_page_link="next")
    body = (await cloud.get(IMAGES, limit=5, __imagetype="gold")).json()
    assert body["next"].startswith("/v2/cloudimages?") and f"marker={body['images'][-1]['id']}" in body["next"]
    assert "__imagetype=gold" in body["next"]
    last = (await cloud.get(IMAGES, limit=1000)).json()
    assert "next" not in last, "no hint on the last page"


async def test_limit_max_switch(cloud: Cloud) -> None:
    await _switch(cloud, images_limit_max=50)
    assert error_of(await cloud.get(IMAGES, limit=51)) == (400, "IMG.0001")
    assert len(await _images(cloud, limit=50)) == 50


async def test_quota(cloud: Cloud) -> None:
    body = (await cloud.get("/v1/cloudimages/quota")).json()
    (resource,) = body["quotas"]["resources"]
    private = await _everything(cloud, __imagetype="private")
    assert resource == {"type": "image", "used": len(private), "quota": 50, "min": 1, "max": 1000}


async def test_flavors_say_their_architecture(cloud: Cloud) -> None:
    flavors = (await cloud.get(f"/v1/{PROJECT}/cloudservers/flavors")).json()["flavors"]
    by_id = {f["id"]: f for f in flavors}
    assert by_id["kc1.large.2"]["os_extra_specs"]["ecs:instance_architecture"] == "arm64"
    assert "ecs:instance_architecture" not in by_id["s6.large.2"]["os_extra_specs"]
    assert isinstance(by_id["s6.large.2"]["vcpus"], str) and isinstance(by_id["s6.large.2"]["ram"], int)
    specs = (await cloud.get(f"/v2.1/{PROJECT}/flavors/km1.xlarge.4/os-extra_specs")).json()["extra_specs"]
    assert specs["ecs:instance_architecture"] == "arm64" and specs["ecs:virtualization_env_types"] == "CloudCompute"
    xen = (await cloud.get(f"/v2.1/{PROJECT}/flavors/s1.large.2/os-extra_specs")).json()["extra_specs"]
    assert xen["ecs:virtualization_env_types"] == "FusionCompute"
    assert (await cloud.get(f"/v2.1/{PROJECT}/flavors/nope/os-extra_specs")).status_code == 404


async def test_bad_switch_values_are_refused_with_the_name(cloud: Cloud) -> None:
    response = await cloud.http.post("/_sim/switches", json={"windows_v1": "maybe"})
    assert response.status_code == 400 and "windows_v1" in response.json()["error"]
    response = await cloud.http.post("/_sim/switches", json={"no_such_switch": 1})
    assert response.status_code == 400 and "no_such_switch" in response.json()["error"]
    assert (await cloud.http.get("/_sim/switches")).json()["windows_v1"] == "refuse"
