"""Every image/flavor incompatibility is refused in the plan, before anyone approves; the simulator refuses the same
change-OS calls as the cloud does, so a bot that skipped a check would meet the cloud's refusal instead."""

from __future__ import annotations

import json

import httpx
import pytest

from bot.cloud import ChangeOsOption, CloudAPIError
from bot.domain.request import RequestState
from bot.slack import views
from sandbox.devtools.stack import DEFAULT_POLICY, LocalStack, StackOptions
from sandbox.simulator.fixtures import ImageFixture, load_fixtures
from sandbox.simulator.server import SimulatorServer

from .conftest import open_plan, wait_state
from .test_tracker_faults import approve_through_slack

pytestmark = pytest.mark.timeout(60)

EXTRA = [
    ImageFixture(id="c0ffee00-0000-4000-8000-00000000b351", name="bms-ubuntu", virtual_env_type="Ironic"),
    ImageFixture(id="c0ffee00-0000-4000-8000-00000000da7a", name="data-disk-image", virtual_env_type="DataImage"),
    ImageFixture(id="c0ffee00-0000-4000-8000-0000000001c0", name="ubuntu-iso", virtual_env_type="IsoImage"),
    ImageFixture(
        id="c0ffee00-0000-4000-8000-00000000a4b1", name="arm-bios", architecture="arm", hw_firmware_type="bios"
    ),
    ImageFixture(id="c0ffee00-0000-4000-8000-0000000000e1", name="xen-only", support_kvm=False, support_xen=True),
]
CASES = [
    # (command, the plan's ⛔ title, codes the cloud answers the same change with)
    ("db-01 centos-7-old", "Image is not active", {"Ecs.0032"}),
    ("db-01 bms-ubuntu", "Not an ECS system-disk image", {"Ecs.0007"}),
    ("db-01 data-disk-image", "Not an ECS system-disk image", {"Ecs.0007"}),
    ("db-01 ubuntu-iso", "Not an ECS system-disk image", {"Ecs.0007"}),
    ("db-01 hce-2.0-arm", "Architecture differs", {"Ecs.0005"}),
    ("arm-01 ubuntu-22.04", "Architecture differs", {"Ecs.0005"}),
    ("arm-01 arm-bios", "Boot firmware does not fit", {"Ecs.0005"}),
    ("db-01 xen-only", "Image does not support KVM", {"Ecs.0005"}),
    ("db-01 rocky-9-large", "System disk too small", {"Ecs.0007"}),
]


@pytest.fixture
async def compat_stack():
    fixtures = load_fixtures()
    fixtures = fixtures.model_copy(update={"images": [*fixtures.images, *EXTRA]})
    options = StackOptions()
    stack = LocalStack(options)
    stack.sim = SimulatorServer(fixtures, speed=options.speed, seed=options.seed)
    async with stack:
        yield stack


def checklist(view: dict) -> str:
    return json.dumps([b for b in view["blocks"] if b.get("block_id") == views.CHECKS_BLOCK], ensure_ascii=False)


async def refused_by_the_cloud(stack: LocalStack, server_name: str, image_name: str) -> str:
    """What the simulator answers when the change is sent anyway (switch: refuse synchronously)."""
    assert stack.rt is not None
    async with httpx.AsyncClient() as http:
        switched = await http.post(stack.sim.base_url + "/_sim/switches", json={"incompatible_image": "sync"})
        assert switched.status_code == 200, switched.text
    server = next(s for s in await stack.rt.cloud.list_servers(limit=100) if s.name == server_name)
    image = next(i for i in await stack.rt.cloud.list_images(name=image_name))
    option = ChangeOsOption(imageid=image.id, keyname="ops-key", userid=stack.sim.user_id)
    with pytest.raises(CloudAPIError) as refused:
        await stack.rt.cloud.change_os(server.id, option, cloud_init=image.cloud_init)
    return refused.value.code or ""


@pytest.mark.parametrize(("command", "title", "codes"), CASES, ids=[c[0] for c in CASES])
async def test_each_incompatibility_is_refused_before_approval(
    compat_stack: LocalStack, command: str, title: str, codes: set[str]
) -> None:
    stack = compat_stack
    view = await open_plan(stack, f"{command} --key ops-key --reason compatibility")
    assert f"⛔ *{title}*" in checklist(view), checklist(view)
    reply = await stack.submit(view)
    assert reply.status_code == 200 and reply.json()["response_action"] == "errors", reply.text
    assert title in json.dumps(reply.json()["errors"])
    assert not [e for e in stack.sim.requests if e["route"].startswith("change_os")]  # nothing reached the cloud
    server_name, image_name = command.split()
    assert await refused_by_the_cloud(stack, server_name, image_name) in codes


async def test_a_key_pair_of_another_user_is_refused_before_approval(compat_stack: LocalStack) -> None:
    stack = compat_stack
    view = await open_plan(stack, "db-01 ubuntu-22.04 --key alice-key --reason someone else's key")
    assert "⛔ *Unknown key pair*" in checklist(view)
    assert "belong to the user" in checklist(view)
    assert stack.rt is not None
    server = (await stack.rt.cloud.find_servers("db-01"))[0]
    image = (await stack.rt.cloud.list_images(name="ubuntu-22.04"))[0]
    option = ChangeOsOption(imageid=image.id, keyname="alice-key", userid=stack.sim.user_id)
    with pytest.raises(CloudAPIError) as refused:
        await stack.rt.cloud.change_os(server.id, option)
    assert refused.value.code == "Ecs.0314"


async def test_windows_through_v1_is_refused(compat_stack: LocalStack) -> None:
    view = await open_plan(compat_stack, "win-01 windows-2022 --password --reason windows")
    assert "⛔ *Windows through the v1 API*" in checklist(view)


async def test_the_plan_names_the_api_and_why(compat_stack: LocalStack) -> None:
    view = await open_plan(compat_stack, "db-01 ubuntu-24.04-cloudinit --key ops-key --reason api")
    assert "Uses the Cloud-Init API (v2)" in checklist(view) and "supports Cloud-Init" in checklist(view)


async def test_a_policy_override_sends_the_change_through_the_api_it_names() -> None:
    override = 'images = ["*"]\nchangeos_api_images = { "ubuntu-24.04*" = "v1" }'
    policy = DEFAULT_POLICY.replace('images = ["*"]', override)
    async with LocalStack(StackOptions(policy=policy)) as stack:
        async with httpx.AsyncClient() as http:  # the simulator's reading: either API takes any image
            assert (await http.post(stack.sim.base_url + "/_sim/switches", json={"fc_inject": "any"})).is_success
        request = await approve_through_slack(stack, "db-01 ubuntu-24.04-cloudinit --key ops-key --reason override")
        assert any('sets v1 for images like "ubuntu-24.04*"' in line for line in request.checklist)
        done = await wait_state(stack, request.id, RequestState.SUCCEEDED, RequestState.FAILED)
        assert done.state is RequestState.SUCCEEDED, done.result
        routes = [e["route"] for e in stack.sim.requests if e["route"].startswith("change_os")]
        assert routes == ["change_os_v1"]
