"""Block Kit builders and the modal-state reader: pure functions, checked against Slack's own models."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from bot.domain.preflight import Check, CheckLevel
from bot.domain.request import ChangeRequest, LoginMethod, RequestState
from bot.slack import views
from bot.slack.modal_state import read_input, read_metadata
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.fake_slack import validate_blocks, validate_view
from tests.support.requests import change_request

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SERVER = views.ServerInfo(
    "7a9f4d3b-0000-4f00-8000-000000000001", "web-01", "ACTIVE", "s6.large.2", "img", "u20", "Linux", 40
)
IMAGES = [views.ImageChoice("67f433d8-ed0e-4321-a8a2-a71838539e09", "ubuntu-22.04", "Linux")]


def request(**changes) -> ChangeRequest:
    """A request whose free text tries to ping and link: views must show it inert."""
    text = {"server_name": "web-01 <!channel>", "reason": "patch *now* <https://evil|click>"}
    ids = {"origin_channel": "C01CHAN001", "server_id": SERVER.id, "target_image_id": IMAGES[0].id}
    return change_request(at=NOW, **{**text, **ids, **changes})


@pytest.mark.parametrize(
    "entry",
    [
        views.PasswordEntry(mode="inline", nonce="3"),
        views.PasswordEntry(mode="link", link="https://bot.example/password#u=U1&t=x"),
        views.PasswordEntry(mode="link", link="https://bot.example/password#u=U1&t=x", is_set=True),
        views.PasswordEntry(mode="unavailable", why_unavailable="off"),
    ],
)
def test_plan_modal_is_valid_block_kit_for_every_password_mode(entry: views.PasswordEntry) -> None:
    plan = views.ModalPlan(
        metadata={"d": "draft", "c": "C01CHAN001"},
        server=SERVER,
        images=IMAGES,
        image_id=IMAGES[0].id,
        keypairs=["ops-key"],
        login=LoginMethod.PASSWORD,
        password=entry,
        reason="r",
        notify=["C01INCIDNT1"],
        checks=[Check(CheckLevel.OK, "fine", ""), Check(CheckLevel.BLOCK, "locked", "unlock it")],
    )
    view = views.plan_modal(plan)
    assert validate_view(view) == []
    text = str(view["blocks"])
    assert "⛔ *locked*: unlock it" in text
    if entry.mode == "inline":
        assert any(b.get("block_id") == f"{views.PASSWORD_BLOCK_PREFIX}:3" for b in view["blocks"])
        assert "visible while you type" in text
    if entry.is_set:
        assert "Password set" in text


def test_ambiguous_server_modal_and_message_modal_are_valid() -> None:
    plan = views.ModalPlan(metadata={"d": "x"}, server=None, candidates=[("a", "app-01 · ACTIVE"), ("b", "app-01")])
    view = views.plan_modal(plan)
    assert validate_view(view) == []
    assert view["submit"]["text"] == "Continue"
    assert validate_view(views.message_modal({}, "Server not found", "No server named x")) == []
    assert validate_view(views.loading_modal({}, "web-01")) == []
    assert validate_view(views.reject_modal("CR-ABCDEF")) == []


@pytest.mark.parametrize("state", list(RequestState))
def test_cards_and_status_are_valid_in_every_state(state: RequestState) -> None:
    req = request(
        state=state,
        job_id="job-1",
        job_progress="Job RUNNING",
        result="done",
        decided_by="U01APR0001",
        approvals=["U01APR0001"],
    )
    checked = req.model_copy(update={"checklist": [Check(CheckLevel.WARN, "unknown size").encode()]})
    text, blocks = views.approval_card(checked)
    assert any("unknown size" in json.dumps(b) for b in blocks)
    assert text and validate_blocks(blocks, max_blocks=50, pointer="/blocks") == []
    has_buttons = any(b["type"] == "actions" for b in blocks)
    assert has_buttons is (state is RequestState.PENDING_APPROVAL)
    text, blocks = views.status_message(req, NOW)
    assert validate_blocks(blocks, max_blocks=50, pointer="/blocks") == []
    reply = views.transition_reply(req)
    assert reply.startswith(views.STATE_LABEL[state].split()[0])  # the reply opens with its own state's emoji
    assert "<!channel>" not in reply
    ended = state in (
        RequestState.SUCCEEDED,
        RequestState.FAILED,
        RequestState.REJECTED,
        RequestState.CANCELLED,
        RequestState.EXPIRED,
    )
    assert (f"<@{req.requester}>" in reply) is ended  # the end, and only the end, pings the requester


def test_user_text_cannot_ping_or_fake_links() -> None:
    _, blocks = views.approval_card(request())
    rendered = str(blocks)
    assert "<!channel>" not in rendered and "&lt;!channel&gt;" in rendered
    assert "<https://evil|click>" not in rendered and "&lt;https://evil|click&gt;" in rendered  # shown, inert


def test_password_login_card_never_shows_a_value() -> None:
    _, blocks = views.approval_card(request(login=LoginMethod.PASSWORD))
    assert "Admin password (set ✓)" in str(blocks)


def test_read_input_tolerates_null_and_absent_values() -> None:
    empty = read_input(
        {
            "state": {
                "values": {
                    views.IMAGE_BLOCK: {views.IMAGE_ACTION: {"selected_option": None}},
                    views.REASON_BLOCK: {views.REASON_ACTION: {"value": None}},
                }
            }
        }
    )
    assert empty.image_id is None and empty.reason is None and empty.login is None
    assert read_input({}).notify == []
    assert read_metadata({"private_metadata": "not json"}) == {}


def test_read_input_reads_every_field_and_keeps_the_password_secret() -> None:
    view = views.plan_modal(
        views.ModalPlan(
            metadata={},
            server=SERVER,
            images=IMAGES,
            keypairs=["ops-key"],
            login=LoginMethod.PASSWORD,
            password=views.PasswordEntry(mode="inline", nonce="1"),
        )
    )
    values = sr.state_from_view(
        view,
        {
            views.IMAGE_BLOCK: sr.select_value(IMAGES[0].id),
            f"{views.PASSWORD_BLOCK_PREFIX}:1": sr.text_value("Canary-Pw-1!"),
            f"{views.PASSWORD_CONFIRM_PREFIX}:1": sr.text_value("Canary-Pw-1!"),
            views.REASON_BLOCK: sr.text_value("  why  "),
            views.STOP_BLOCK: sr.radio_value("HARD"),
            views.NOTIFY_BLOCK: sr.multi_conversations_value(["C01INCIDNT1"]),
        },
    )
    chosen = read_input({"state": {"values": values}})
    assert chosen.image_id == IMAGES[0].id and chosen.reason == "why" and chosen.stop_type.value == "HARD"
    assert chosen.password == SecretStr("Canary-Pw-1!") and chosen.notify == ["C01INCIDNT1"]
    assert "Canary-Pw-1!" not in repr(chosen)


# ---------------------------------------------------------------- what a new user meets (issue 11, part 2)


def test_every_text_slack_formats_escapes_user_and_cloud_text() -> None:
    req = request(state=RequestState.FAILED, result="cloud said <!everyone>", target_image_name="<!here> img")
    texts_shown = [
        *views.approval_card(req),
        *views.status_message(req, NOW),
        views.transition_reply(req),
        views.notify_end(req, None),
        views.notify_start(req, None),
        views.request_line(req),
        views.list_text([req]),
    ]
    rendered = str(texts_shown)
    for raw in ("<!channel>", "<!here>", "<!everyone>", "<https://evil"):
        assert raw not in rendered, raw


def test_usage_placeholders_are_not_slack_control_sequences() -> None:
    from bot.domain.policy import Policy
    from bot.slack import texts

    policy = Policy.parse(
        'approvals_channel = "C01APPROVE1"\n[[rules]]\nservers = ["*"]\nrequesters = ["U01REQ0001"]\n'
        'approvers = ["U01APR0001"]\nimages = ["*"]\n'
    )
    for text in (texts.USAGE, texts.help_text(policy, "U01REQ0001", []), views.list_text([])):
        assert "<" not in text and ">" not in text, text
    assert "SERVER" in texts.USAGE


def test_server_not_found_escapes_the_query_and_the_typed_command() -> None:
    from bot.slack import texts

    text = texts.server_not_found("<!channel>", ["web-01"], "<!channel> ubuntu --reason <https://evil|x>")
    assert "<!channel>" not in text and "<https://evil" not in text
    assert "&lt;!channel&gt;" in text and "web-01" in text and "You typed" in text


def test_chooser_says_why_it_is_shown() -> None:
    candidates = [("a", "app-01 · ACTIVE"), ("b", "app-01 · SHUTOFF")]
    plain = views.plan_modal(views.ModalPlan(metadata={}, server=None, candidates=candidates))
    named = views.plan_modal(
        views.ModalPlan(metadata={}, server=None, candidates=candidates, chooser_label="Several are named app-01")
    )
    assert "Several" not in str(plain["blocks"]) and "Choose the server" in str(plain["blocks"])
    assert "Several are named app-01" in str(named["blocks"])
    assert "No image is allowed" not in str(plain["blocks"]), "no server yet: the image list waits for it"


def test_unknown_notify_names_are_said_next_to_the_channel_picker() -> None:
    plan = views.ModalPlan(metadata={}, server=SERVER, notify_unknown=["inc<!here>", "ops"])
    view = views.plan_modal(plan)
    assert validate_view(view) == []
    ids = [b.get("block_id") for b in view["blocks"]]
    note = view["blocks"][ids.index(views.NOTIFY_BLOCK) - 1]
    text = str(note)
    assert "Not told: #inc&lt;!here&gt;, #ops" in text and "<!here>" not in text


# ---------------------------------------------------------------- the image type-ahead (issue 14)


def test_the_image_field_is_a_type_ahead_that_keeps_the_chosen_image() -> None:
    view = views.plan_modal(views.ModalPlan(metadata={}, server=SERVER, images=IMAGES, image_id=IMAGES[0].id))
    assert validate_view(view) == [], "Slack's own models accept the external_select"
    element = next(b for b in view["blocks"] if b.get("block_id") == views.IMAGE_BLOCK)["element"]
    assert element["type"] == "external_select" and element["action_id"] == views.IMAGE_ACTION
    assert element["initial_option"]["value"] == IMAGES[0].id and "options" not in element
    assert element["min_query_length"] == 0
    plain = views.plan_modal(views.ModalPlan(metadata={}, server=SERVER))
    assert validate_view(plain) == []
    assert "initial_option" not in next(b for b in plain["blocks"] if b.get("block_id") == views.IMAGE_BLOCK)["element"]


def test_type_ahead_answers_are_grouped_bounded_and_labelled_within_slack_limits() -> None:
    long = views.ImageChoice("0b1e7a42-2404-4c1d-8a5e-c10d1417a240", "x" * 200, "Linux")
    many = [views.image_option(views.ImageChoice(f"id-{n}", f"img-{n}", "Linux")) for n in range(80)]
    answer = views.image_options([("Private images (this project)", many), ("Public images", many), ("Empty", [])])
    groups = answer["option_groups"]
    assert [g["label"]["text"] for g in groups] == ["Private images (this project)", "Public images"]
    assert sum(len(g["options"]) for g in groups) == 100
    label = views.image_option(long)["text"]["text"]
    assert len(label) <= 75 and label.endswith("0b1e7a42"), "the ID's start tells same-named images apart"
    assert views.image_options([]) == {"options": []}
    notice = views.image_options_notice("Choose the server first")
    picked = sr.select_value(notice["options"][0]["value"], kind="external_select")
    assert read_input({"state": {"values": {views.IMAGE_BLOCK: {views.IMAGE_ACTION: picked}}}}).image_id is None
