"""The image type-ahead and the command's image argument, end to end: signed block_suggestion requests to the bot,
a generated catalogue in the simulator, answers read as Slack reads them."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.cloud import Image
from bot.cloud.client import ImageQuery
from bot.slack import views
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.stack import APPROVER, OUTSIDER, REQUESTER, LocalStack, StackOptions
from tests.e2e.conftest import modal_action, open_plan
from tests.support.sim_ids import UBUNTU_22

ARM_01 = "7a9f4d3b-0000-4f00-8000-00000000000a"
CENTOS_OLD = "c3e7a0b1-0007-4f2d-8e9a-1b2c3d4e0007"  # queued
HCE_ARM = "5e0a4c2b-0a70-4d6e-8f1a-2b3c4d5e0a70"


@pytest.fixture
async def stack() -> AsyncIterator[LocalStack]:
    async with LocalStack(StackOptions(catalogue_size=400)) as s:
        yield s


async def suggest(stack: LocalStack, view: dict[str, Any], value: str, *, user: str = REQUESTER) -> dict[str, Any]:
    assert stack.sender is not None
    body = sr.block_suggestion(
        view=view, action_id=views.IMAGE_ACTION, block_id=views.IMAGE_BLOCK, value=value, user_id=user
    )
    response = await stack.sender.send(body)
    assert response.status_code == 200, response.text
    return response.json()


def offered(answer: dict[str, Any]) -> list[tuple[str, str]]:
    """(value, text) of every option, groups flattened in order."""
    options = list(answer.get("options") or [])
    for group in answer.get("option_groups") or []:
        options.extend(group["options"])
    return [(o["value"], o["text"]["text"]) for o in options]


async def everything(stack: LocalStack) -> dict[str, Image]:
    assert stack.rt is not None
    listed = await stack.rt.cloud.catalogue(ImageQuery(status=None, virtual_env_type=None))
    return {i.id: i for i in listed.images}


async def test_the_type_ahead_offers_only_images_that_can_serve_the_server(stack: LocalStack) -> None:
    view = await open_plan(stack, "web-01 --key ops-key --reason r")
    element = next(b for b in view["blocks"] if b.get("block_id") == views.IMAGE_BLOCK)["element"]
    assert element["type"] == "external_select" and "options" not in element
    catalogue = await everything(stack)

    first = await suggest(stack, view, "")
    labels = [g["label"]["text"] for g in first["option_groups"]]
    assert labels[0] == "Private images (this project)" and "Public images" in labels
    shown = offered(first)
    assert 0 < len(shown) <= 100
    for value, text in shown:
        image = catalogue[value]
        assert image.status == "active" and image.is_ecs_system_image and image.architecture == "x86", text
        assert len(text) <= 75

    ubuntu = await suggest(stack, view, "  UBUNTU-22.04 ")
    assert offered(ubuntu)[0][0] == UBUNTU_22, "the exact name first, whatever the case"
    names = [catalogue[v].name.lower() for v, _ in offered(await suggest(stack, view, "ubuntu"))]
    prefixed = [n.startswith("ubuntu") for n in names]
    assert prefixed[0] and prefixed == sorted(prefixed, reverse=True), "prefix matches before contains matches"
    assert offered(await suggest(stack, view, UBUNTU_22[:8]))[0][0] == UBUNTU_22, "an ID prefix finds it"
    assert offered(await suggest(stack, view, "no such image anywhere")) == []
    inactive = [i for i in catalogue.values() if i.status != "active" or not i.is_ecs_system_image]
    assert inactive, "the catalogue has images that must never be offered"
    for image in inactive[:5]:
        assert image.id not in {v for v, _ in offered(await suggest(stack, view, image.name))}


async def test_an_arm_server_is_offered_arm_images_only(stack: LocalStack) -> None:
    view = await open_plan(stack, "arm-01 --key ops-key --reason r")
    catalogue = await everything(stack)
    shown = offered(await suggest(stack, view, ""))
    assert shown and all(catalogue[v].architecture == "arm" for v, _ in shown)
    assert HCE_ARM in {v for v, _ in offered(await suggest(stack, view, "hce"))}
    ubuntu = [v for v, _ in offered(await suggest(stack, view, "ubuntu"))]
    assert UBUNTU_22 not in ubuntu and all(catalogue[v].architecture == "arm" for v in ubuntu)


async def test_typing_costs_no_ims_call_and_stays_bounded(stack: LocalStack) -> None:
    view = await open_plan(stack, "web-01 --key ops-key --reason r")
    before = [r for r in stack.sim.requests if r.get("route") == "list_images"]
    for typed in ("u", "ub", "ubu", "ubun", "ubunt", "ubuntu", "x" * 5000):
        answer = await suggest(stack, view, typed)
        assert len(offered(answer)) <= 100
    after = [r for r in stack.sim.requests if r.get("route") == "list_images"]
    assert len(after) == len(before), "every key was answered from the cache"


async def test_only_the_forms_owner_named_by_the_policy_gets_options(stack: LocalStack) -> None:
    view = await open_plan(stack, "web-01 --key ops-key --reason r")
    assert offered(await suggest(stack, view, "ubuntu"))
    for other in (APPROVER, OUTSIDER):
        assert await suggest(stack, view, "ubuntu", user=other) == {"options": []}
    stack.slack.clear_calls()
    chooser = await open_plan(stack, "--key ops-key --reason r")
    answer = await suggest(stack, chooser, "ubuntu")
    assert [v for v, _ in offered(answer)] == ["none"] and "server first" in json.dumps(answer)


async def test_an_option_picked_from_the_type_ahead_stays_chosen_and_is_submitted(stack: LocalStack) -> None:
    view = await open_plan(stack, "web-01 --key ops-key --reason patch")
    value, _ = next(o for o in offered(await suggest(stack, view, "ubuntu-24.04-cloudinit")))
    rebuilt = await modal_action(stack, view, views.IMAGE_ACTION, value)
    assert not stack.slack.errors(), [c.response for c in stack.slack.errors()]
    image = next(b for b in rebuilt["blocks"] if b.get("block_id") == views.IMAGE_BLOCK)["element"]
    assert image["initial_option"]["value"] == value, "views.update keeps the pick"
    again = await modal_action(stack, rebuilt, views.LOGIN_ACTION, "password")
    back = await modal_action(stack, again, views.LOGIN_ACTION, "keypair")
    assert next(b for b in back["blocks"] if b.get("block_id") == views.IMAGE_BLOCK)["element"]["initial_option"]
    reply = await stack.submit(back)
    assert reply.status_code == 200 and reply.text == "", reply.text
    [request] = await stack.slack.wait_until(stack.rt.store.live, what="the request")
    assert (request.target_image_id, request.target_image_name) == (value, "ubuntu-24.04-cloudinit")


# ---------------------------------------------------------------------------------------------------- the command


def chosen(view: dict[str, Any]) -> str | None:
    element = next(b for b in view["blocks"] if b.get("block_id") == views.IMAGE_BLOCK)["element"]
    return (element.get("initial_option") or {}).get("value")


def checks_of(view: dict[str, Any]) -> str:
    return json.dumps(next(b for b in view["blocks"] if b.get("block_id") == views.CHECKS_BLOCK), ensure_ascii=False)


@pytest.mark.parametrize("typed", [UBUNTU_22, UBUNTU_22.upper(), "Ubuntu-22.04", "ubuntu-22.0"])
async def test_the_command_takes_an_id_an_exact_name_or_a_unique_prefix(stack: LocalStack, typed: str) -> None:
    view = await open_plan(stack, f"web-01 {typed} --key ops-key --reason r")
    assert chosen(view) == UBUNTU_22
    assert "⛔" not in checks_of(view)
    assert not stack.slack.told(REQUESTER), "nothing to explain"


async def test_an_unknown_image_gets_the_closest_names_once(stack: LocalStack) -> None:
    view = await open_plan(stack, "web-01 ubuntu-22.4 --key ops-key --reason r")
    assert chosen(view) is None
    said = (await stack.slack.wait_until(lambda: stack.slack.told(REQUESTER) or None, what="the closest names"))[0]
    assert "Closest names" in said.text and "ubuntu-22.04" in said.text
    assert "Image not found" in checks_of(view)


async def test_several_matches_are_listed_with_a_count_never_guessed(stack: LocalStack) -> None:
    catalogue = await everything(stack)
    usable = [i for i in catalogue.values() if i.is_ecs_system_image and i.status == "active"]
    x86 = [i for i in usable if i.architecture == "x86"]
    letter, _ = Counter(i.name[0].lower() for i in x86 if i.name[0].lower() in "ghijklmnopqrstuvwxyz").most_common(1)[0]
    matching = [i for i in x86 if i.name.lower().startswith(letter)]  # not a hex digit: no ID starts with it
    assert len(matching) > 10, "the generated catalogue has many x86 images that start alike"
    view = await open_plan(stack, f"web-01 {letter.upper()} --key ops-key --reason r")
    assert chosen(view) is None
    text = (await stack.slack.wait_until(lambda: stack.slack.told(REQUESTER) or None, what="the matches"))[0].text
    assert text.count("•") == 10 and f"and {len(matching) - 10} more" in text, text
    assert f"matches {len(matching)} images" in checks_of(view)
    assert "(ARM)" not in text, "an x86 server: ARM images are not candidates"


async def test_an_image_named_outside_the_usable_catalogue_is_chosen_and_refused_with_a_reason(
    stack: LocalStack,
) -> None:
    for typed in (CENTOS_OLD, "centos-7-old"):
        stack.slack.clear_calls()
        view = await open_plan(stack, f"web-01 {typed} --key ops-key --reason r")
        assert chosen(view) == CENTOS_OLD, "selected, so the plan says why it cannot be used"
        checks = checks_of(view)
        assert "⛔" in checks and "Image not found" not in checks and "not active" in checks.lower()


async def test_a_slow_or_failing_catalogue_gets_a_word_in_time_then_the_list(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.slack.listeners import changeos
    from sandbox.simulator.faults import FaultSpec

    view = await open_plan(stack, "web-01 --key ops-key --reason r")
    assert stack.rt is not None
    cache = stack.rt.planner.catalogue
    monkeypatch.setattr(changeos, "OPTIONS_SECONDS", 0.3)  # Slack's 3 s, shortened for the test

    cache.invalidate()
    stack.sim.faults.add(FaultSpec(route="list_images", latency_ms=800))
    fetches = cache.fetches
    slow = await suggest(stack, view, "ubuntu")
    assert [v for v, _ in offered(slow)] == ["none"] and "still loading" in json.dumps(slow)
    assert cache.fetches == fetches + 1
    await asyncio.wait_for(cache.get(), 5)  # joins the fetch the first key started: it was not cancelled
    assert cache.fetches == fetches + 1
    assert UBUNTU_22 in {v for v, _ in offered(await suggest(stack, view, "ubuntu"))}, "the next key has it"

    stack.sim.faults.clear()
    cache.invalidate()
    stack.sim.faults.add(FaultSpec(route="list_images", error_rate=1.0, status=400, code="IMG.0001"))
    failed = await suggest(stack, view, "ubuntu")
    assert [v for v, _ in offered(failed)] == ["none"] and "did not answer" in json.dumps(failed)
