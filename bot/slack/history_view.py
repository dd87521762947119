"""`/changeos history`: the latest changes as an ephemeral answer (pure Block Kit, within Slack's limits).

Each change shows its state, who asked, who approved or decided, when, the image before and after, and a link to
its thread. The link is built from the approval card's channel and ts (Slack's archive URL form), so a list of 20
costs no `chat.getPermalink` call; Slack sends the reader to the message in their workspace.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.domain.request import ChangeRequest, RequestState
from bot.slack.views import STATE_LABEL, escape, slack_date

SHOWN = 20  # 1 heading + 20 sections + 1 context: well within 50 blocks; each section stays under 3,000 characters
ARCHIVE = "https://slack.com/archives/{channel}/p{ts}"


def thread_link(req: ChangeRequest) -> str | None:
    if not (req.approval_ts and req.approvals_channel):
        return None
    return ARCHIVE.format(channel=req.approvals_channel, ts=req.approval_ts.replace(".", ""))


def _who_decided(req: ChangeRequest) -> str:
    if req.state in (RequestState.REJECTED, RequestState.CANCELLED) and req.decided_by:
        verb = "rejected" if req.state is RequestState.REJECTED else "cancelled"
        return f"{verb} by <@{req.decided_by}>"
    if req.approvals:
        return "approved by " + ", ".join(f"<@{u}>" for u in req.approvals)
    if req.state is RequestState.PENDING_APPROVAL:
        return "waiting for approval"
    return "no approval"


def entry(req: ChangeRequest) -> str:
    before = escape(req.current_image_name or req.current_image_id or "?")
    after = escape(req.target_image_name or req.target_image_id)
    link = thread_link(req)
    ended = f", ended {slack_date(req.finished_at)}" if req.finished_at else ""
    lines = [
        f"*{escape(req.server_name)}* `{req.id}` · {STATE_LABEL[req.state]}" + (f" · <{link}|thread>" if link else ""),
        f"`{before}` → `{after}`",
        f"asked by <@{req.requester}> {slack_date(req.created_at)}{ended} · {_who_decided(req)}",
    ]
    return "\n".join(lines)[:2900]


def history_answer(requests: Sequence[ChangeRequest], *, scope: str) -> dict:
    """The ack's fields: `text` (the notification fallback) and `blocks`; `scope` says what was asked for."""
    if not requests:
        return {"text": f"No changes {scope}. `/changeos history` without filters shows the latest of all."}
    shown = requests[:SHOWN]
    head = f"*Latest changes {scope}* (newest first, {len(shown)} shown)"
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": head}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": entry(r)}} for r in shown]
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": "`/changeos status CR-…` shows one change with its audit trail."}],
        }
    )
    return {"text": f"Latest changes {scope}: " + ", ".join(r.id for r in shown), "blocks": blocks}


def scope_words(server: str | None, mine: bool, since_text: str | None) -> str:
    parts = []
    if server:
        parts.append(f"of {escape(server)}")
    if mine:
        parts.append("you asked for")
    if since_text:
        parts.append(f"since {since_text}")
    return " ".join(parts) or "of every server"
