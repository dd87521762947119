"""Fleet Block Kit at 3 and at 500 servers, checked by the fake Slack's validators (Slack's own models)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain import fleet as f
from bot.domain.fleet import FleetPhase as P
from bot.domain.fleet import ServerPhase as S
from bot.domain.preflight import Check, CheckLevel
from bot.slack import fleet_views as fv
from sandbox.devtools.fake_slack import MAX_MESSAGE_BLOCKS, validate_blocks, validate_view

NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
LONG = "x" * 200 + " <!channel>"


def plan(n: int, **kw: object) -> fv.FleetPlan:
    servers = [
        fv.ServerCheck(
            f"id-{i}",
            f"web-{i:03d}{LONG if i % 50 == 0 else ''}",
            "ACTIVE",
            (Check(CheckLevel.BLOCK, "Server is locked", "unlock it"),)
            if i % 7 == 0
            else (Check(CheckLevel.WARN, "Old image", ""),)
            if i % 5 == 0
            else (Check(CheckLevel.OK, "fine"),),
        )
        for i in range(n)
    ]
    left = [
        f.LeftOut(id=f"x-{i}", name=f"db-{i}", reason="No rule covers it" if i % 2 else "not found")
        for i in range(n // 10)
    ]
    base: dict[str, object] = dict(
        metadata={"f": "draft"},
        selector="servers named `web-*`",
        image_name="ubuntu-22.04",
        servers=servers,
        left_out=left,
        wave_sizes=[1, max(n // 10, 1)],
        login="key pair ops-key",
        approval="2 approvals (rule 'db')",
    )
    base.update(kw)
    return fv.FleetPlan(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [1, 3, 40, 41, 500])
@pytest.mark.parametrize("choice", [fv.LEAVE_OUT, fv.BLOCK_FLEET])
def test_plan_modal_is_valid_at_any_size(n: int, choice: str) -> None:
    view = fv.fleet_plan_modal(plan(n, blocked_choice=choice))
    assert validate_view(view) == []
    text = str(view["blocks"])
    assert "<!channel>" not in text and "&lt;!channel&gt;" in text
    assert ("submit" in view) is (choice == fv.LEAVE_OUT and n > 1)  # n = 1: its only server is blocked
    if n > 40:
        assert f"The full list of {n} servers is posted in the thread" in text


def test_plan_modal_counts_and_refusals() -> None:
    view = fv.fleet_plan_modal(plan(12))
    text = str(view["blocks"])
    assert "12 resolved · ✅ 8 · ⚠️ 2 · ⛔ 2 · 1 left out" in text
    assert view["submit"]["text"] == "Request 10 changes"
    refused = fv.fleet_plan_modal(plan(12, problems=["The fleet has 12 servers; the policy allows at most 10"]))
    assert "submit" not in refused and "allows at most 10" in str(refused["blocks"])


def rollout(n: int, phase: P = P.RUNNING) -> f.Rollout:
    waves = [[(f"s-{i}", f"web-{i:03d}{LONG}")] for i in range(1)] + [[(f"s-{i}", f"web-{i:03d}") for i in range(1, n)]]
    step = f.new_rollout(
        requester="U01REQ0001",
        channel="C01CHAN001",
        image_id="img",
        image_name="ubuntu-22.04",
        waves=waves,
        approval=f.FleetApproval(1, (("U01APP0001",),), ("web",)),
        now=NOW,
        selector="servers tagged `role=web`",
    )
    r = step.rollout.model_copy(update={"phase": phase, "started_at": NOW})
    for i, s in enumerate(r.servers):
        s.started_at = NOW
        if i % 3 == 0:
            s.phase, s.ended_at, s.reason, s.backup_image_id = (
                S.FAILED,
                NOW + timedelta(minutes=4),
                "Ecs.1002 " + "r" * 400,
                "bk",
            )
        elif i % 3 == 1:
            s.phase, s.ended_at = S.HEALTHY, NOW + timedelta(minutes=3)
        else:
            s.phase = S.RUNNING
    return r


@pytest.mark.parametrize("n", [3, 12, 500])
@pytest.mark.parametrize("phase", list(P))
def test_status_message_and_card_are_valid(n: int, phase: P) -> None:
    r = rollout(n, phase)
    text, blocks = fv.fleet_status_message(r, NOW + timedelta(minutes=10))
    assert validate_blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS, pointer="/blocks") == []
    assert len(text) < 3000 and "<!channel>" not in str(blocks)
    text, blocks = fv.fleet_approval_card(r)
    assert validate_blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS, pointer="/blocks") == []


def test_status_message_shows_counts_failures_eta_and_the_right_buttons() -> None:
    r = rollout(12, P.HALTED)
    text, blocks = fv.fleet_status_message(r, NOW + timedelta(minutes=10))
    body = str(blocks)
    assert "❌ failed 4" in body and "✅ done 4" in body and "🔄 changing 4" in body
    assert "Ecs.1002" in body and "ETA" in body and "⏱️ 10m 00s" in body
    actions = [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert actions == [fv.FLEET_RESUME, fv.FLEET_ROLLBACK, fv.FLEET_ABORT]
    assert text.startswith(r.id) and "4/12 done, 4 failed" in text
    _, many = fv.fleet_status_message(rollout(500, P.RUNNING), NOW)
    assert "more failures, listed in the thread" in str(many)


def test_full_list_in_the_thread_is_chunked_within_limits() -> None:
    r = rollout(500)
    messages = fv.server_list_messages(f"{r.id}: every server", fv.fleet_server_lines(r))
    assert len(messages) == 1  # 500 servers fit one message of ≤ 50 sections
    for text, blocks in messages:
        assert validate_blocks(blocks, max_blocks=MAX_MESSAGE_BLOCKS, pointer="/blocks") == []
        assert len(text) < 40_000
    assert sum(b["text"]["text"].count("\n") + 1 for b in messages[0][1][1:]) == 500
    huge = fv.server_list_messages("t", ["y" * 2999] * 60)
    assert len(huge) == 2 and all(len(b) <= MAX_MESSAGE_BLOCKS for _, b in huge)


def test_thread_replies() -> None:
    r = rollout(3, P.HALTED)
    assert "failed: Ecs.1002" in fv.fleet_reply(r, f.ThreadReply("failure", "s-0"))
    assert "halted after 1 failure:" in fv.fleet_reply(r, f.ThreadReply("halted"))
    done = r.model_copy(update={"phase": P.DONE, "ended_at": NOW + timedelta(minutes=5)})
    assert "1 changed, 1 failed, 0 skipped, in 5m 00s" in fv.fleet_reply(done, f.ThreadReply("end"))
