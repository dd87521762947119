"""Block Kit for fleets (pure): the plan modal's summary, the Approve card and the one status message.

They hold at 500 servers: per-server detail is summed up in a few lines (counts, the first few failures) and the
full list goes to the thread (`server_list_messages`), chunked to Slack's limits: 3,000 characters per text,
50 blocks per message, 100 per modal.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.domain.fleet import FleetPhase, LeftOut, Rollout, ServerPhase, ThreadReply, eta
from bot.domain.preflight import Check, CheckLevel
from bot.slack.views import elapsed, escape

FLEET_MODAL_CALLBACK = "changeos_fleet_modal"
FLEET_BLOCKED_BLOCK, FLEET_BLOCKED_ACTION = "fleet_blocked_b", "fleet_blocked"  # a block action: re-render
LEAVE_OUT, BLOCK_FLEET = "leave_out", "block_fleet"
# Buttons; each carries the rollout id as its value.
FLEET_APPROVE, FLEET_REJECT, FLEET_CANCEL = "fl_approve", "fl_reject", "fl_cancel"
FLEET_CONTINUE, FLEET_PAUSE, FLEET_RESUME, FLEET_ABORT, FLEET_ROLLBACK = (
    "fl_continue",
    "fl_pause",
    "fl_resume",
    "fl_abort",
    "fl_rollback",
)

TEXT_MAX = 3000
MESSAGE_BLOCKS = 50
SHOWN_FAILURES = 10  # failures listed in the status message; the rest are in the thread

PHASE_LABEL = {
    FleetPhase.AWAITING_APPROVAL: "⏳ Waiting for approval",
    FleetPhase.RUNNING: "🔄 Rolling out",
    FleetPhase.WAITING: "⏸️ Waiting for Continue",
    FleetPhase.PAUSED: "⏸️ Paused",
    FleetPhase.HALTED: "🛑 Halted: too many failures",
    FleetPhase.ABORTED: "🗑️ Aborted",
    FleetPhase.DONE: "✅ Done",
    FleetPhase.REJECTED: "🚫 Rejected",
    FleetPhase.CANCELLED: "🗑️ Cancelled",
    FleetPhase.EXPIRED: "⌛ Expired",
}
SERVER_LABEL = {
    ServerPhase.PENDING: "⏳ waiting",
    ServerPhase.STARTING: "📤 starting",
    ServerPhase.RUNNING: "🔄 changing",
    ServerPhase.VERIFYING: "🔎 health check",
    ServerPhase.HEALTHY: "✅ done",
    ServerPhase.FAILED: "❌ failed",
    ServerPhase.SKIPPED: "⏭️ skipped",
    ServerPhase.ROLLING_BACK: "↩️ rolling back",
    ServerPhase.ROLLED_BACK: "↩️ rolled back",
}
_ICON = {CheckLevel.OK: "✅", CheckLevel.WARN: "⚠️", CheckLevel.BLOCK: "⛔"}


def _plain(value: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": value if len(value) <= limit else value[: limit - 1] + "…", "emoji": True}


def _section(markdown: str) -> dict[str, Any]:
    text = markdown if len(markdown) <= TEXT_MAX else markdown[: TEXT_MAX - 1] + "…"
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(markdown: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": markdown[:TEXT_MAX]}]}


def chunk_lines(lines: Sequence[str], limit: int = TEXT_MAX) -> list[str]:
    """Lines packed into texts of at most `limit` characters (a longer line is cut)."""
    chunks: list[str] = []
    current = ""
    for raw in lines:
        line = raw if len(raw) <= limit else raw[: limit - 1] + "…"
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


def server_list_messages(title: str, lines: Sequence[str]) -> list[tuple[str, list[dict[str, Any]]]]:
    """The full per-server list for the thread, as few messages as the limits allow (each ≤ 50 sections)."""
    chunks = chunk_lines(lines)
    messages: list[tuple[str, list[dict[str, Any]]]] = []
    per = MESSAGE_BLOCKS - 1
    for start in range(0, max(len(chunks), 1), per):
        part = chunks[start : start + per]
        head = title if start == 0 else f"{title} (continued)"
        blocks = [_section(f"*{escape(head)}*"), *(_section(c) for c in part)]
        messages.append((f"{head} ({len(lines)} lines)", blocks))  # the fallback text; the blocks carry the list
    return messages


# ---------------------------------------------------------------------------------------------------------------------
# The plan modal


@dataclass(frozen=True, slots=True)
class ServerCheck:
    """One resolved server and its pre-flight checks (the single-server checklist, per server)."""

    id: str
    name: str
    status: str
    checks: tuple[Check, ...] = ()

    @property
    def level(self) -> CheckLevel:
        levels = {c.level for c in self.checks}
        for level in (CheckLevel.BLOCK, CheckLevel.WARN):
            if level in levels:
                return level
        return CheckLevel.OK

    def line(self) -> str:
        worst = [c for c in self.checks if c.level is self.level and c.level is not CheckLevel.OK]
        why = f": {escape(worst[0].title)}" + (f" (+{len(worst) - 1})" if len(worst) > 1 else "") if worst else ""
        return f"{_ICON[self.level]} *{escape(self.name or self.id)}* · {escape(self.status)}{why}"


@dataclass(frozen=True, slots=True)
class FleetPlan:
    metadata: dict[str, Any]
    selector: str
    image_name: str
    servers: Sequence[ServerCheck]
    left_out: Sequence[LeftOut] = ()  # left out before the checks (no rule covers it, not found, …)
    wave_sizes: Sequence[int] = ()
    parallel: int = 5
    max_failures: int = 1
    pause: bool = False
    login: str = ""
    approval: str = ""  # e.g. "2 approvals (rule 'db' is the strictest)" or "self-service"
    problems: Sequence[str] = ()  # fleet-wide refusals: max_fleet_size, no common approver
    blocked_choice: str = LEAVE_OUT
    fleet_checks: Sequence[Check] = field(default_factory=tuple)  # image-level checks, once for the fleet
    shown_servers: int = 40  # servers listed one per line in the modal; above, a summary and the thread


def fleet_plan_modal(plan: FleetPlan) -> dict[str, Any]:
    by_level = Counter(s.level for s in plan.servers)
    blocked = [s for s in plan.servers if s.level is CheckLevel.BLOCK]
    going = len(plan.servers) - (len(blocked) if plan.blocked_choice == LEAVE_OUT else 0)
    waves = " → ".join(str(n) for n in plan.wave_sizes) or "-"
    blocks: list[dict[str, Any]] = [
        _section(
            f"*Fleet:* {escape(plan.selector)}\n*Image:* {escape(plan.image_name)}\n"
            f"*Servers:* {len(plan.servers)} resolved · ✅ {by_level[CheckLevel.OK]} · ⚠️ {by_level[CheckLevel.WARN]}"
            f" · ⛔ {by_level[CheckLevel.BLOCK]}" + (f" · {len(plan.left_out)} left out" if plan.left_out else "")
        ),
        _section(
            f"*Waves:* {waves} (canary first) · *parallel* {plan.parallel} · *halt after* {plan.max_failures} "
            f"failure{'s' if plan.max_failures != 1 else ''}"
            + (" · *pause* between waves" if plan.pause else "")
            + (f"\n*Login:* {escape(plan.login)}" if plan.login else "")
            + (f"\n*Approval:* {escape(plan.approval)}" if plan.approval else "")
        ),
    ]
    for problem in plan.problems:
        blocks.append(_section(f"⛔ {escape(problem)}"))
    if plan.fleet_checks:
        blocks.append(_section("\n".join(str(c) for c in plan.fleet_checks)))
    blocks.append({"type": "divider"})
    ordered = sorted(plan.servers, key=lambda s: -[CheckLevel.OK, CheckLevel.WARN, CheckLevel.BLOCK].index(s.level))
    if len(plan.servers) <= plan.shown_servers:
        blocks += [_section(c) for c in chunk_lines([s.line() for s in ordered])[:20]]
    else:
        flagged = [s for s in ordered if s.level is not CheckLevel.OK]
        lines = [s.line() for s in flagged[:15]]
        more = len(flagged) - len(lines)
        if lines:
            blocks += [_section(c) for c in chunk_lines(lines)[:5]]
        blocks.append(
            _context(
                (f"…and {more} more with warnings or blocks. " if more > 0 else "")
                + f"The full list of {len(plan.servers)} servers is posted in the thread when you submit."
            )
        )
    if plan.left_out:
        reasons = Counter(lo.reason for lo in plan.left_out)
        lines = [f"• {escape(reason)}: {n}" for reason, n in reasons.most_common(10)]
        names = ", ".join(escape(lo.name or lo.id) for lo in plan.left_out[:20])
        rest = f" and {len(plan.left_out) - 20} more" if len(plan.left_out) > 20 else ""
        blocks.append(_section(f"*Left out ({len(plan.left_out)}):*\n" + "\n".join(lines)))
        blocks.append(_context(f"{names}{rest}"))
    if blocked:
        options = [
            {"text": _plain(f"Leave out the {len(blocked)} blocked, change {going}", 75), "value": LEAVE_OUT},
            {"text": _plain("Block the whole fleet until all pass", 75), "value": BLOCK_FLEET},
        ]
        initial = options[0] if plan.blocked_choice == LEAVE_OUT else options[1]
        blocks.append(_section(f"*{len(blocked)} server{'s' if len(blocked) != 1 else ''} fail a check.* Choose:"))
        blocks.append(
            {
                "type": "actions",
                "block_id": FLEET_BLOCKED_BLOCK,
                "elements": [
                    {
                        "type": "radio_buttons",
                        "action_id": FLEET_BLOCKED_ACTION,
                        "options": options,
                        "initial_option": initial,
                    }
                ],
            }
        )
    refused = bool(plan.problems) or going == 0 or (blocked and plan.blocked_choice == BLOCK_FLEET)
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": FLEET_MODAL_CALLBACK,
        "title": _plain("Fleet OS change", 24),
        "close": _plain("Cancel", 24),
        "private_metadata": json.dumps(plan.metadata, separators=(",", ":")),
        "blocks": blocks[:100],
        "notify_on_close": True,
    }
    if not refused:
        view["submit"] = _plain(f"Request {going} change{'s' if going != 1 else ''}", 24)
    return view


# ---------------------------------------------------------------------------------------------------------------------
# The Approve card and the status message


def _button(action_id: str, label: str, value: str, style: str | None = None, confirm: str | None = None) -> dict:
    button: dict[str, Any] = {"type": "button", "action_id": action_id, "text": _plain(label, 75), "value": value}
    if style:
        button["style"] = style
    if confirm:
        button["confirm"] = {
            "title": _plain(f"{label}?", 100),
            "text": {"type": "mrkdwn", "text": confirm[:300]},
            "confirm": _plain(label, 30),
            "deny": _plain("Back", 30),
        }
    return button


def _summary(r: Rollout) -> str:
    sizes = [len(r.in_wave(w)) for w in range(r.wave_count)]
    return (
        f"*{r.id}* · {len(r.servers)} servers → *{escape(r.image_name or r.image_id)}* · by <@{r.requester}>\n"
        f"*Fleet:* {escape(r.selector or '-')} · *Waves:* {' → '.join(map(str, sizes))} · *parallel* {r.parallel}"
        f" · *halt after* {r.max_failures} failure{'s' if r.max_failures != 1 else ''}"
        + (" · *pause* between waves" if r.pause_between_waves else "")
    )


def fleet_approval_card(r: Rollout) -> tuple[str, list[dict[str, Any]]]:
    """What approvers act on: the fleet in a few lines, the wave plan, the canaries, and the buttons while pending."""
    canaries = ", ".join(escape(s.label) for s in r.in_wave(0)[:10])
    need = f"{len(r.approvals)} of {r.approvals_required} approval(s)"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": _plain(f"Fleet OS change {r.id}", 150)},
        _section(_summary(r)),
        _context(f"Canary: {canaries} · {need}" + (f" · {len(r.left_out)} left out" if r.left_out else "")),
    ]
    if r.phase is FleetPhase.AWAITING_APPROVAL:
        blocks.append(
            {
                "type": "actions",
                "block_id": "fleet_decide",
                "elements": [
                    _button(
                        FLEET_APPROVE,
                        "Approve",
                        r.id,
                        "primary",
                        f"Change the OS of {len(r.servers)} servers, in waves, canary first?",
                    ),
                    _button(FLEET_REJECT, "Reject", r.id, "danger"),
                    _button(FLEET_CANCEL, "Cancel", r.id),
                ],
            }
        )
    else:
        who = f" by <@{r.decided_by}>" if r.decided_by else ""
        blocks.append(_context(f"{PHASE_LABEL[r.phase]}{who}"))
    return f"Fleet OS change {r.id}: {len(r.servers)} servers → {r.image_name or r.image_id}", blocks


_BUTTONS: dict[FleetPhase, tuple[str, ...]] = {
    FleetPhase.RUNNING: (FLEET_PAUSE, FLEET_ABORT),
    FleetPhase.WAITING: (FLEET_CONTINUE, FLEET_PAUSE, FLEET_ABORT),
    FleetPhase.PAUSED: (FLEET_RESUME, FLEET_ABORT),
    FleetPhase.HALTED: (FLEET_RESUME, FLEET_ROLLBACK, FLEET_ABORT),
    FleetPhase.DONE: (FLEET_ROLLBACK,),
    FleetPhase.ABORTED: (FLEET_ROLLBACK,),
}


def _controls(r: Rollout) -> list[dict[str, Any]]:
    failed_with_backup = any(s.phase is ServerPhase.FAILED and s.backup_image_id for s in r.servers)
    out: list[dict[str, Any]] = []
    for action in _BUTTONS.get(r.phase, ()):
        if action == FLEET_ROLLBACK and not failed_with_backup:
            continue
        if action == FLEET_ABORT:
            out.append(_button(action, "Abort", r.id, "danger", "Start no more servers. Changes already sent finish."))
        elif action == FLEET_RESUME:
            label = "Resume (accept failures)" if r.phase is FleetPhase.HALTED else "Resume"
            out.append(_button(action, label, r.id, "primary"))
        elif action == FLEET_CONTINUE:
            out.append(_button(action, f"Continue with wave {r.wave + 2}", r.id, "primary"))
        elif action == FLEET_PAUSE:
            out.append(_button(action, "Pause", r.id))
        else:
            out.append(_button(action, "Roll back failed", r.id, None, "Restore each failed server from its backup?"))
    return out


def fleet_status_message(r: Rollout, now: datetime) -> tuple[str, list[dict[str, Any]]]:
    """The one message per fleet, edited in place: counts, the wave, failures with reasons, elapsed and ETA."""
    counts = r.counts()
    shown = [f"{SERVER_LABEL[p]} {n}" for p, n in counts.items() if n]
    end = r.ended_at or now
    left = eta(r, now)
    timing = f"⏱️ {elapsed(r.started_at, end)}" + (f" · ETA {elapsed(now, now + left)}" if left is not None else "")
    wave = f"wave {min(r.wave + 1, r.wave_count)} of {r.wave_count}" if r.wave_count else "no waves"
    blocks: list[dict[str, Any]] = [
        _section(f"*{PHASE_LABEL[r.phase]}* · {wave}\n{_summary(r)}"),
        _section(" · ".join(shown) or "-"),
    ]
    failed = [s for s in r.servers if s.phase in (ServerPhase.FAILED, ServerPhase.ROLLED_BACK)]
    if failed:
        lines = [
            f"❌ *{escape(s.label)}*: {escape(s.reason or 'failed')}"
            + (" (rolled back)" if s.phase is ServerPhase.ROLLED_BACK else "")
            for s in failed[:SHOWN_FAILURES]
        ]
        if len(failed) > SHOWN_FAILURES:
            lines.append(f"…and {len(failed) - SHOWN_FAILURES} more failures, listed in the thread.")
        blocks.append(_section(f"*Failures ({len(failed)}; halt at {r.max_failures + r.failures_forgiven}):*"))
        blocks += [_section(c) for c in chunk_lines(lines)[:5]]
    blocks.append(_context(timing + (f" · {len(r.left_out)} left out" if r.left_out else "")))
    controls = _controls(r)
    if controls:
        blocks.append({"type": "actions", "block_id": "fleet_controls", "elements": controls})
    done = counts[ServerPhase.HEALTHY]
    text = f"{r.id} {PHASE_LABEL[r.phase]}: {done}/{len(r.servers)} done, {len(failed)} failed"
    return text, blocks


def fleet_server_lines(r: Rollout) -> list[str]:
    """One line per server for the thread: wave, state, request and reason."""
    return [
        f"{s.wave + 1}. *{escape(s.label)}* · {SERVER_LABEL[s.phase]}"
        + (f" · {s.request_id}" if s.request_id else "")
        + (f" · {escape(s.reason[:300])}" if s.reason else "")
        for s in r.servers
    ]


def fleet_reply(r: Rollout, reply: ThreadReply) -> str:
    """The thread reply for a `ThreadReply` effect: only failures, halts and the end reach the thread."""
    s = r.server(reply.server_id) if reply.server_id else None
    if reply.kind == "failure" and s is not None:
        return f"❌ *{escape(s.label)}* failed: {escape(s.reason or 'no reason given')}" + (
            f" ({s.request_id})" if s.request_id else ""
        )
    if reply.kind == "halted":
        return (
            f"🛑 {r.id} halted after {r.failures} failure{'s' if r.failures != 1 else ''}: no new server starts, "
            "running changes finish. An approver may Resume, Roll back failed, or Abort."
        )
    counts = r.counts()
    if reply.kind == "end":
        return (
            f"{PHASE_LABEL[r.phase]} {r.id}: {counts[ServerPhase.HEALTHY]} changed, {r.failures} failed, "
            f"{counts[ServerPhase.SKIPPED]} skipped, in {elapsed(r.started_at, r.ended_at or r.created_at)}."
        )
    who = f" by <@{r.decided_by}>" if r.decided_by else ""
    return f"{r.id} {reply.kind}{who}."
