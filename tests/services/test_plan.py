"""The plan as pure functions: form + cloud facts + policy → checks under their fields, and the request it becomes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from bot.cloud import Image, Server
from bot.domain.policy import Policy
from bot.domain.preflight import CheckLevel, Field
from bot.domain.request import LoginMethod, StopType
from bot.services.imagematch import Resolution
from bot.services.plan import (
    PasswordInput,
    PlanInputs,
    PlanPolicy,
    ServerFacts,
    build_change_request,
    default_inputs,
    evaluate_plan,
    missing_inputs,
)

POLICY = Policy.parse(
    """
approvals_channel = "C01APPROVE1"
notify_channels = ["C01INCIDNT1"]
request_expiry_minutes = 30

[[rules]]
name = "web"
servers = ["web-*"]
requesters = ["U01REQ0001"]
approvers = ["U01APR0001", "U01APR0002"]
approvals_required = 2
images = ["ubuntu-*", "windows-*"]

[[rules]]
name = "sandboxes"
servers = ["sandbox-*"]
requesters = ["U01REQ0001"]
self_service = true
images = ["*"]
"""
)
WEB, SANDBOX = POLICY.rules[0], POLICY.rules[1]
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
STRONG = "Corr3ct-Horse-Battery"


def server(**changes: Any) -> Server:
    data: dict[str, Any] = {
        "id": "a3f1c2d4-0000-4000-8000-000000000001",
        "name": "web-01",
        "status": "SHUTOFF",
        "image": {"id": "img-old"},
        "metadata": {"image_name": "ubuntu-20.04"},
        "os-extended-volumes:volumes_attached": [{"id": "vol-1", "bootIndex": "0"}],
        "flavor": {"id": "s6.large.2"},
        "key_name": "ops-key",
    }
    data.update(changes)
    return Server.model_validate(data)


def image(name: str = "ubuntu-22.04", **changes: Any) -> Image:
    data: dict[str, Any] = {"id": f"id-{name}", "name": name, "status": "active", "__os_type": "Linux", "min_disk": 40}
    data.update(changes)
    return Image.model_validate(data)


WINDOWS = image("windows-2022", __os_type="Windows", __support_fc_inject="false")
FACTS = ServerFacts(server(), system_disk_gb=40, architecture="x86", virtualization="KVM")
KEYS = ["ops-key", "dev-key"]
GOOD = PlanInputs(image_id="id-ubuntu-22.04", login=LoginMethod.KEYPAIR, keyname="ops-key", reason="patch")


def plan_for(inputs: PlanInputs = GOOD, *, facts: ServerFacts = FACTS, target: Image | None = None, **policy: Any):
    chosen = target if target is not None else (image() if inputs.image_id else None)
    return evaluate_plan(inputs, facts, chosen, KEYS, PlanPolicy(POLICY, policy.pop("rule", WEB), **policy))


def test_a_good_plan_blocks_nothing_and_becomes_the_request() -> None:
    plan = plan_for()
    assert plan.blocking == [] and plan.errors == {}
    request = build_change_request(plan, requester="U01REQ0001", origin_channel="C01CHAN001", now=NOW)
    assert (request.server_name, request.target_image_name, request.keyname) == ("web-01", "ubuntu-22.04", "ops-key")
    assert request.approvals_channel == "C01APPROVE1" and request.approvals_required == 2
    assert request.notify_channels == ["C01INCIDNT1"] and request.expires_at == NOW + timedelta(minutes=30)
    assert request.cloud_init and not request.stop_first and request.stop_type is StopType.SOFT
    assert len(request.checklist) == len(plan.checks) and not plan.self_service


# Each case: what differs from a good plan → the field its ⛔ goes under, and a word of the title.
BLOCKED: list[tuple[str, dict[str, Any], Field, str]] = [
    ("locked server", {"facts": replace(FACTS, server=server(locked=True))}, Field.IMAGE, "locked"),
    ("running, no stop first", {"facts": replace(FACTS, server=server(status="BUILD"))}, Field.IMAGE, "BUILD"),
    ("image inactive", {"target": image(status="queued")}, Field.IMAGE, "not active"),
    ("disk too small", {"target": image(min_disk=80)}, Field.IMAGE, "too small"),
    ("image outside the rule", {"target": image("centos-7", id="id-ubuntu-22.04")}, Field.IMAGE, "not allowed"),
    ("arm image on x86", {"target": image(__support_arm="true")}, Field.IMAGE, "Architecture"),
    ("no rule", {"rule": None}, Field.IMAGE, "not allowed"),
    ("unknown key pair", {"inputs": replace(GOOD, keyname="gone-key")}, Field.KEY, "Unknown key pair"),
    ("key pair on Windows", {"target": WINDOWS}, Field.KEY, "Key pair on Windows"),
    ("no user id", {"keypair_login": False}, Field.KEY, "Key pair login unavailable"),
    ("no login", {"inputs": replace(GOOD, login=None)}, Field.LOGIN, "No login method"),
    ("password not set", {"inputs": replace(GOOD, login=LoginMethod.PASSWORD)}, Field.LOGIN, "Password not set"),
    (
        "password unavailable",
        {"inputs": replace(GOOD, login=LoginMethod.PASSWORD, password=PasswordInput(unavailable="no page"))},
        Field.LOGIN,
        "Password login unavailable",
    ),
    (
        "page password breaks the Windows rules",
        {
            "inputs": replace(
                GOOD,
                image_id=WINDOWS.id,
                login=LoginMethod.PASSWORD,
                password=PasswordInput(is_set=True, kept=SecretStr("Administrator-2024a")),
            ),
            "target": WINDOWS,
        },
        Field.LOGIN,
        "Password rejected",
    ),
]


@pytest.mark.parametrize(("change", "field", "word"), [case[1:] for case in BLOCKED], ids=[c[0] for c in BLOCKED])
def test_each_block_lands_under_its_field(change: dict[str, Any], field: Field, word: str) -> None:
    plan = plan_for(**change)
    assert plan.blocking, "something blocks"
    assert word in plan.errors[field], plan.errors
    assert all(line.startswith("⛔") for line in plan.errors.values())
    with pytest.raises(ValueError, match="blocking"):
        build_change_request(plan, requester="U01REQ0001", origin_channel="C1", now=NOW)


@pytest.mark.parametrize(
    ("query", "title"),
    [
        (None, "No image chosen"),
        (Resolution("ubunt", matches=[image(), image("ubuntu-24.04")], total=2), "Several images match"),
        (Resolution("centos-9", suggestions=["centos-7"]), "Image not found"),
    ],
)
def test_no_image_says_why(query: Resolution | None, title: str) -> None:
    plan = plan_for(replace(GOOD, image_id=None, image_query=query))
    assert title in plan.errors[Field.IMAGE]


@pytest.mark.parametrize(
    ("typed", "confirm", "problem"),
    [
        (STRONG, STRONG, None),
        (STRONG, STRONG + "x", "differ"),
        ("short", "short", "characters"),
    ],
)
def test_a_typed_password_is_judged_for_the_target(typed: str, confirm: str, problem: str | None) -> None:
    password = PasswordInput(is_set=True, typed=SecretStr(typed), confirm=SecretStr(confirm))
    plan = plan_for(replace(GOOD, login=LoginMethod.PASSWORD, password=password))
    assert (plan.password_problem is None) if problem is None else (problem in (plan.password_problem or ""))
    assert typed not in repr(plan) and typed not in str(plan.checks)


@pytest.mark.parametrize(
    ("inputs", "missing"),
    [
        (GOOD, set()),
        (PlanInputs(), {Field.IMAGE, Field.LOGIN, Field.REASON}),
        (replace(GOOD, keyname=None), {Field.KEY}),
        (replace(GOOD, keyname=None, login=LoginMethod.PASSWORD), set()),
        (replace(GOOD, reason=None), {Field.REASON}),
    ],
)
def test_missing_inputs(inputs: PlanInputs, missing: set[Field]) -> None:
    assert set(missing_inputs(inputs)) == missing


@pytest.mark.parametrize(
    ("chosen", "typed", "target", "login", "keyname"),
    [
        (PlanInputs(), PlanInputs(), image(), LoginMethod.KEYPAIR, "ops-key"),  # the server's own key pair
        (PlanInputs(), PlanInputs(), WINDOWS, LoginMethod.PASSWORD, "ops-key"),
        (PlanInputs(), PlanInputs(login=LoginMethod.PASSWORD), image(), LoginMethod.PASSWORD, "ops-key"),
        (PlanInputs(), PlanInputs(keyname="gone-key"), image(), LoginMethod.KEYPAIR, "gone-key"),  # never swapped
        (PlanInputs(login=LoginMethod.KEYPAIR), PlanInputs(login=LoginMethod.PASSWORD), WINDOWS, LoginMethod.KEYPAIR,
         "ops-key"),
    ],
)
def test_defaults_chosen_then_typed_then_the_server(
    chosen: PlanInputs, typed: PlanInputs, target: Image, login: LoginMethod, keyname: str
) -> None:
    inputs = default_inputs(chosen, typed=typed, server=FACTS.server, image=target, keypairs=KEYS)
    assert (inputs.login, inputs.keyname, inputs.stop_type) == (login, keyname, StopType.SOFT)


def test_the_server_key_is_no_default_when_the_bot_user_lacks_it() -> None:
    inputs = default_inputs(PlanInputs(), typed=PlanInputs(), server=server(key_name="x"), image=None, keypairs=KEYS)
    assert inputs.keyname is None


def test_the_request_follows_the_rule_and_the_form() -> None:
    running = replace(FACTS, server=server(status="ACTIVE", name="sandbox-1"))
    inputs = replace(GOOD, stop_type=StopType.HARD, notify=("C01MINE0001", "C01INCIDNT1"), ticket="INC-1")
    plan = plan_for(inputs, facts=running, rule=SANDBOX)
    assert plan.self_service
    request = build_change_request(plan, requester="U01REQ0001", origin_channel="C01CHAN001", now=NOW)
    assert request.stop_first and request.stop_type is StopType.HARD and request.ticket == "INC-1"
    assert request.notify_channels == ["C01INCIDNT1", "C01MINE0001"], "the policy's first, then the form's, once each"
    assert request.approvals_required == 1, "the store counts at least one approval; self-service skips it"


def test_the_v1_api_when_the_image_has_no_cloud_init() -> None:
    plan = plan_for(target=image(__support_fc_inject="true"))
    assert not plan.cloud_init and any("v1" in c.title for c in plan.checks if c.level is CheckLevel.OK)


def test_a_reason_too_long_for_the_request_is_a_validation_error() -> None:
    plan = plan_for(replace(GOOD, reason="x" * 5000))
    with pytest.raises(ValidationError):
        build_change_request(plan, requester="U01REQ0001", origin_channel="C1", now=NOW)
