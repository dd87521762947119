"""The sentences the bot says: help, status, and every error a person can meet, each saying what to do next."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import ValidationError

from bot.cloud import CloudAPIError, CloudError, CloudUnreachableError, Image
from bot.domain.policy import Policy
from bot.domain.request import ID_PATTERN, ChangeRequest
from bot.slack import views
from bot.store import Store

INTERNAL_ERROR = (
    "Something went wrong on the bot's side; nothing was changed in the cloud. Try again; if it happens again, "
    "tell the bot's admin (the details are in the bot's log)."
)
DATABASE_DOWN = (
    "⛔ The bot cannot reach its database right now, so it cannot take, approve or change requests; nothing was "
    "changed. Try again in a minute. If it lasts, tell the bot's admin (the bot's /healthz says what is wrong)."
)
# Placeholders in capitals: Slack reads anything in <…> as a link or a mention, even inside backticks.
USAGE = (
    "`/changeos SERVER [IMAGE] [--key NAME | --password] [--stop soft|hard] [--reason TEXT] [--ticket ID] "
    "[--notify #channel ...]`"
)
NOT_IN_POLICY = (
    "⛔ You are not named in the bot's policy as someone who may request OS changes, so I looked nothing up. "
    "Ask the bot's admin to add you (or one of your user groups) to config/policy.toml."
)


def help_text(policy: Policy, user: str, groups: Iterable[str]) -> str:
    groups = set(groups)
    lines = ["*/changeos*: change the operating system of a Huawei Cloud ECS server, with approval."]
    may_request = policy.can_request_anything(user, groups)
    may_approve = policy.can_approve_anything(user, groups)
    if may_request:
        lines += [
            f"• {USAGE}: opens the plan card; anything you leave out is asked for there.",
            "• `/changeos cancel REQUEST-ID`: cancel your request before it is submitted to the cloud.",
            "• `/changeos rollback REQUEST-ID`: a new request back to the backup taken before that change.",
            "• `/changeos backups SERVER`: the bot's backups of a server, with their age and size.",
        ]
    if may_approve:
        lines.append("• You may approve requests: use the *Approve* / *Reject* buttons on the approval card.")
    lines += [
        "• `/changeos status [REQUEST-ID | SERVER]`: the live state and the audit trail.",
        "• `/changeos list`: every live request.",
        "• `/changeos history [SERVER] [--mine] [--since 7d]`: the latest changes, with links to their threads.",
    ]
    if not may_request and not may_approve:
        lines.append(
            "You are not named in the bot's policy, so you can look but not change anything. "
            "Ask the bot's admin to add you to config/policy.toml."
        )
    return "\n".join(lines)


async def status_text(store: Store, target: str | None) -> str:
    if not target:
        return views.list_text(await store.live())
    if ID_PATTERN.match(target.upper()):
        request = await store.get(target.upper())
        if request is None:
            return (
                f"No change request {target.upper()} is known to the bot. Check the ID (the approval card and the "
                "bot's messages show it); a request that ended long ago may have been removed by retention. "
                "`/changeos history` lists the latest changes."
            )
    else:
        candidates = await store.history(server=target, limit=50)
        request = next((r for r in candidates if r.is_live), None) or next(iter(candidates), None)
    if request is None:
        return (
            f"No change request matches `{views.escape(target)}`. Give a request id such as `CR-7K2Q9F` or a server "
            "name; `/changeos list` shows the live requests, `/changeos history` the latest ones."
        )
    lines = [views.request_line(request)]
    if request.job_id:
        lines.append(
            f"Job `{request.job_id}`" + (f": {views.escape(request.job_progress)}" if request.job_progress else "")
        )
    if request.result:
        lines.append(views.escape(request.result))
    lines.append("*Audit trail*")
    for event in (await store.audit(request.id))[-25:]:
        who = f"<@{event.actor}>" if event.actor.startswith(("U", "W")) else event.actor
        move = f" {event.from_state or '·'} → {event.to_state}" if event.to_state else ""
        detail = f": {views.escape(event.detail)}" if event.detail else ""
        lines.append(f"• {views.slack_date(event.at, '{time}')} {who} {event.action}{move}{detail}")
    return "\n".join(lines)


def server_not_found(query: str, suggestions: list[str], typed: str = "") -> str:
    """Suggestions name only servers the person may change; the typed command is shown back to copy and fix."""
    text = f"No server named `{views.escape(query)}` in this project."
    if suggestions:
        text += " Did you mean " + ", ".join(f"`{views.escape(s)}`" for s in suggestions) + "?"
    text += " Run `/changeos SERVER` again with the exact name or the server ID."
    if typed.strip():
        text += f"\nYou typed:\n```/changeos {views.escape(typed.strip())}```"
    return text


def no_server_for_you() -> str:
    return (
        "No server in this project is covered by a policy rule that names you as a requester. "
        "Ask the bot's admin to add a rule for the servers you look after to config/policy.toml."
    )


def cloud_trouble(exc: CloudError) -> str:
    if isinstance(exc, CloudUnreachableError):
        head = "I could not reach Huawei Cloud."
    elif isinstance(exc, CloudAPIError):
        head = f"Huawei Cloud refused the lookup ({views.escape(str(exc.code or exc.status))})."
    else:
        head = "Huawei Cloud did not answer as expected."
    return f"⚠️ {head} {views.escape(exc.hint)} Nothing was changed; run the command again in a minute."


def short_cloud_trouble(exc: BaseException) -> str:
    if isinstance(exc, CloudError):
        return f"The cloud did not confirm the plan: {exc.hint}"[:300]
    return "The cloud is slow to answer; press Submit again in a moment."


def validation_message(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "the request is not valid"
    where = ".".join(str(p) for p in errors[0]["loc"]) or "the request"
    return f"{where}: {str(errors[0]['msg']).removeprefix('Value error, ')}"[:300]


def server_busy(server_name: str, live: ChangeRequest | None) -> str:
    """For a view_submission error, which Slack shows as plain text: nothing to escape here."""
    if live is None:
        return f"{server_name} already has a live change request. `/changeos list` shows it."
    return (
        f"{server_name} already has a live request, {live.id} ({live.state.value.replace('_', ' ')}). "
        f"Wait for it, or see `/changeos status {live.id}`."
    )


def card_not_posted(request: ChangeRequest) -> str:
    return (
        f"⚠️ {request.id} is stored, but I could not post its approval card in <#{request.approvals_channel}>. "
        "Invite me to that channel (`/invite @changeos`), then ask an approver to look at "
        f"`/changeos status {request.id}`."
    )


def backups_server_unknown(ref: str, found: int, suggestions: Sequence[str]) -> str:
    if found > 1:
        return f"Several servers you may change are named {views.escape(ref)}: give its ID instead."
    close = f" Closest: {', '.join(views.escape(s) for s in suggestions[:3])}." if suggestions else ""
    return f"No server you may change is named {views.escape(ref)}.{close}"


def backups_list(server_name: str, images: Sequence[Image], now: datetime) -> str:
    """The bot's backups of one server: name, status, age, size and the request that made each."""
    if not images:
        return f"No backups of *{views.escape(server_name)}* made by the bot."
    lines = [f"*Backups of {views.escape(server_name)}* (newest first)"]
    for image in images[:30]:
        age = views.elapsed(image.created_at, now) if image.created_at else "age unknown"
        size = f"{image.size / 1024**3:.1f} GB" if image.size else "size unknown"
        request = next((t.split("=", 1)[1] for t in image.tags if t.startswith("ecsbot-request=")), "?")
        lines.append(f"• `{views.escape(image.name)}` · {image.status} · {age} old · {size} · before {request}")
    return "\n".join(lines)
