"""Block Kit builders: pure functions from domain values to the dicts Slack receives.

Block and action ids are stable so that `views.update` keeps what people typed (Slack preserves an input whose
block_id and action_id are unchanged); the password input alone gets a fresh block_id when it must be cleared.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.domain.preflight import Check, CheckLevel, Field
from bot.domain.request import ChangeRequest, LoginMethod, RequestState

MODAL_CALLBACK = "changeos_modal"
REJECT_CALLBACK = "changeos_reject"

# Block and action ids of the plan modal.
SERVER_BLOCK, SERVER_ACTION = "server_b", "server"
IMAGE_BLOCK, IMAGE_ACTION = "image_b", "image"
LOGIN_BLOCK, LOGIN_ACTION = "login_b", "login"
KEY_BLOCK, KEY_ACTION = "key_b", "key"
PASSWORD_BLOCK_PREFIX, PASSWORD_ACTION = "password_b", "password"
PASSWORD_CONFIRM_PREFIX, PASSWORD_CONFIRM_ACTION = "password2_b", "password2"
PASSWORD_LINK_BLOCK, PASSWORD_LINK_ACTION = "pwlink_b", "pwlink"
STOP_BLOCK, STOP_ACTION = "stop_b", "stop"
REASON_BLOCK, REASON_ACTION = "reason_b", "reason"
TICKET_BLOCK, TICKET_ACTION = "ticket_b", "ticket"
NOTIFY_BLOCK, NOTIFY_ACTION = "notify_b", "notify"
BACKUP_BLOCK, BACKUP_ACTION = "backup_b", "backup"
BACKUP_ON = "on"
CHECKS_BLOCK = "checks_b"
REJECT_REASON_BLOCK, REJECT_REASON_ACTION = "reject_reason_b", "reject_reason"

# Where a plan's ⛔ shows on a submitted form: the block of the field it is about (Field.FORM: the first input).
FIELD_BLOCKS: dict[Field, str] = {
    Field.IMAGE: IMAGE_BLOCK,
    Field.LOGIN: LOGIN_BLOCK,
    Field.KEY: KEY_BLOCK,
    Field.REASON: REASON_BLOCK,
    Field.BACKUP: BACKUP_BLOCK,
}

# Approval card buttons.
APPROVE_ACTION, REJECT_ACTION, CANCEL_ACTION = "cr_approve", "cr_reject", "cr_cancel"
# The final status message: a new request back to the backup image (opens the plan modal, pre-filled).
ROLLBACK_ACTION = "cr_rollback"

LEVEL_ICON = {CheckLevel.OK: "✅", CheckLevel.WARN: "⚠️", CheckLevel.BLOCK: "⛔"}
STATE_LABEL: dict[RequestState, str] = {
    RequestState.PENDING_APPROVAL: "⏳ Waiting for approval",
    RequestState.APPROVED: "👍 Approved, starting",
    RequestState.STOPPING: "⏹️ Stopping the server",
    RequestState.BACKING_UP: "💾 Backing up the system disk",
    RequestState.SUBMITTING: "📤 Submitting the change",
    RequestState.RUNNING: "🔄 Changing the OS",
    RequestState.RECONCILING: "🔎 Checking what the cloud did",
    RequestState.SUCCEEDED: "✅ Succeeded",
    RequestState.FAILED: "❌ Failed",
    RequestState.REJECTED: "🚫 Rejected",
    RequestState.CANCELLED: "🗑️ Cancelled",
    RequestState.EXPIRED: "⌛ Expired",
}


def _text(value: str, limit: int = 3000) -> dict:
    return {"type": "plain_text", "text": _clip(value, limit), "emoji": True}


def _md(value: str, limit: int = 3000) -> dict:
    return {"type": "mrkdwn", "text": _clip(value, limit)}


def _clip(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _option(label: str, value: str) -> dict:
    return {"text": _text(label, 75), "value": value[:150]}


def escape(value: str) -> str:
    """Slack mrkdwn control characters, so a server name or reason cannot ping @channel or fake a link."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_date(moment: datetime, fmt: str = "{date_short_pretty} {time}") -> str:
    epoch = int(moment.timestamp())
    return f"<!date^{epoch}^{fmt}|{moment.astimezone(UTC):%Y-%m-%d %H:%M} UTC>"


def elapsed(start: datetime | None, end: datetime) -> str:
    if start is None:
        return "-"
    seconds = max(0, int((end - start).total_seconds()))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


# ---------------------------------------------------------------- the plan modal


@dataclass(frozen=True, slots=True)
class ServerInfo:
    id: str
    name: str
    status: str
    flavor: str
    image_id: str | None
    image_name: str | None
    os_type: str | None
    system_disk_gb: int | None


@dataclass(frozen=True, slots=True)
class ImageChoice:
    id: str
    name: str
    os_type: str

    @property
    def label(self) -> str:
        """Name, OS and the ID's start: public images often share a name, and the option text stops at 75."""
        return f"{_clip(self.name, 52)} ({self.os_type[:10]}) · {self.id[:8]}"


@dataclass(frozen=True, slots=True)
class PasswordEntry:
    """How the modal takes a password: a one-time link, the plain-input fallback, or not at all (with why)."""

    mode: str  # "link" | "inline" | "unavailable"
    link: str | None = None
    is_set: bool = False
    why_unavailable: str = ""
    nonce: str = "0"
    link_expires_at: datetime | None = None
    signin: bool = False  # the page asks for Sign in with Slack; False: the link alone is enough (a bearer link)
    set_at: datetime | None = None
    set_by_you: bool = True
    set_verified: bool = False  # set by someone signed in with Slack as the form's owner
    password_expires_at: datetime | None = None
    notice: str | None = None  # why the form was rebuilt (e.g. the stored password expired)


@dataclass(frozen=True, slots=True)
class ModalPlan:
    metadata: dict
    server: ServerInfo | None
    candidates: Sequence[tuple[str, str]] = ()  # (server id, label) when no server or several were named
    chooser_label: str = "Choose the server"
    images: Sequence[ImageChoice] = ()
    image_id: str | None = None
    keypairs: Sequence[str] = ()
    login: LoginMethod | None = None
    keyname: str | None = None
    password: PasswordEntry = field(default_factory=lambda: PasswordEntry(mode="unavailable"))
    stop_type: str = "SOFT"
    reason: str | None = None
    ticket: str | None = None
    notify: Sequence[str] = ()
    notify_unknown: Sequence[str] = ()  # "#name" typed as plain text: Slack did not recognise it as a channel
    checks: Sequence[Check] = ()
    backup_mode: str = "off"  # the rule's: "offered" shows the checkbox
    backup_on: bool = True
    rollback_of: str | None = None


def _modal(title: str, blocks: list[dict], metadata: dict, *, submit: str | None = None) -> dict:
    view = {
        "type": "modal",
        "callback_id": MODAL_CALLBACK,
        "title": _text(title, 24),
        "close": _text("Cancel", 24),
        "private_metadata": json.dumps(metadata, separators=(",", ":")),
        "blocks": blocks,
        "notify_on_close": True,  # view_closed: a closed form's password links die with it
    }
    if submit:
        view["submit"] = _text(submit, 24)
    return view


def loading_modal(metadata: dict, server_hint: str | None) -> dict:
    what = f"*{escape(server_hint)}*" if server_hint else "your servers"
    return _modal(
        "Change OS",
        [{"type": "section", "text": _md(f":hourglass_flowing_sand: Looking up {what} and the images in the cloud…")}],
        metadata,
    )


def message_modal(metadata: dict, title: str, text: str) -> dict:
    """A modal that only explains something (server not found, not allowed, cloud unavailable)."""
    return _modal(title, [{"type": "section", "text": _md(text)}], metadata)


def plan_modal(plan: ModalPlan) -> dict:
    blocks: list[dict] = []
    server = plan.server
    if plan.rollback_of:
        what = f"↩️ *Rollback of {escape(plan.rollback_of)}*: back to the image taken before that change."
        blocks.append({"type": "context", "elements": [_md(what + " Choose the login again.")]})
    if plan.candidates:
        blocks.append(
            {
                "type": "input",
                "block_id": SERVER_BLOCK,
                "dispatch_action": True,
                "label": _text(plan.chooser_label, 2000),
                "element": {
                    "type": "static_select",
                    "action_id": SERVER_ACTION,
                    "placeholder": _text("Server"),
                    "options": [_option(label, sid) for sid, label in plan.candidates[:100]],
                    **(
                        {"initial_option": _option(_label_for(plan.candidates, server.id), server.id)}
                        if server and any(sid == server.id for sid, _ in plan.candidates)
                        else {}
                    ),
                },
            }
        )
    if server is not None:
        fields = [
            _md(f"*Server*\n{escape(server.name)}\n`{server.id}`"),
            _md(f"*Status*\n{escape(server.status)} · {escape(server.flavor)}"),
            _md(f"*Current image*\n{escape(server.image_name or 'unknown')}"),
            _md(f"*System disk*\n{server.system_disk_gb} GB" if server.system_disk_gb else "*System disk*\nunknown"),
        ]
        blocks.append({"type": "section", "fields": fields})
    blocks.append(_image_input(plan))
    blocks.append(
        {
            "type": "input",
            "block_id": LOGIN_BLOCK,
            "dispatch_action": True,
            "label": _text("Login after the change"),
            "element": {
                "type": "radio_buttons",
                "action_id": LOGIN_ACTION,
                "options": [
                    _option("Key pair (recommended)", LoginMethod.KEYPAIR.value),
                    _option("Admin password", LoginMethod.PASSWORD.value),
                ],
                **({"initial_option": _login_option(plan.login)} if plan.login else {}),
            },
        }
    )
    if plan.login is LoginMethod.KEYPAIR:
        blocks.append(_key_input(plan))
    elif plan.login is LoginMethod.PASSWORD:
        blocks.extend(_password_blocks(plan.password))
    if server is not None and server.status == "ACTIVE":
        blocks.append(_stop_input(plan.stop_type))
    if server is not None and plan.backup_mode == "offered":
        blocks.append(_backup_input(plan.backup_on))
    blocks.append(
        {
            "type": "input",
            "block_id": REASON_BLOCK,
            "label": _text("Reason"),
            "element": {
                "type": "plain_text_input",
                "action_id": REASON_ACTION,
                "multiline": True,
                "max_length": 500,
                "placeholder": _text("Why this change, now?"),
                **({"initial_value": plan.reason} if plan.reason else {}),
            },
        }
    )
    blocks.append(
        {
            "type": "input",
            "block_id": TICKET_BLOCK,
            "optional": True,
            "label": _text("Ticket or incident"),
            "element": {
                "type": "plain_text_input",
                "action_id": TICKET_ACTION,
                "max_length": 100,
                **({"initial_value": plan.ticket} if plan.ticket else {}),
            },
        }
    )
    if plan.notify_unknown:
        blocks.append({"type": "context", "elements": [_md(notify_unknown_text(plan.notify_unknown))]})
    blocks.append(
        {
            "type": "input",
            "block_id": NOTIFY_BLOCK,
            "optional": True,
            "label": _text("Also tell these channels (start and result)"),
            "element": {
                "type": "multi_conversations_select",
                "action_id": NOTIFY_ACTION,
                "filter": {"include": ["public", "private"], "exclude_bot_users": True},
                **({"initial_conversations": list(plan.notify)[:20]} if plan.notify else {}),
            },
        }
    )
    blocks.append(checklist_block(plan.checks))
    # Slack requires a submit button on any modal with inputs; a blocked plan is refused inline on submit.
    return _modal("Change OS", blocks, plan.metadata, submit="Request approval" if server else "Continue")


def field_errors(errors: Mapping[Field, str], view: dict) -> dict[str, str]:
    """`response_action: errors` for a submitted form: each message under its field's input."""
    first = next((b["block_id"] for b in view.get("blocks") or [] if b.get("type") == "input"), REASON_BLOCK)
    blocks = {**FIELD_BLOCKS, Field.FORM: first}
    return {blocks[where]: message for where, message in errors.items()}


def notify_unknown_text(names: Sequence[str]) -> str:
    shown = ", ".join(f"#{escape(n)}" for n in names)
    return (
        f"⚠️ Not told: {shown}. Slack sent it as plain text, not as a channel it knows (a typo, or a channel you "
        "cannot see). Choose the channel below; in a command, pick it from Slack's autocomplete."
    )


def _label_for(candidates: Sequence[tuple[str, str]], server_id: str) -> str:
    return next(label for sid, label in candidates if sid == server_id)


def _login_option(login: LoginMethod) -> dict:
    label = "Key pair (recommended)" if login is LoginMethod.KEYPAIR else "Admin password"
    return _option(label, login.value)


def _image_input(plan: ModalPlan) -> dict:
    """A type-ahead over the whole catalogue (the options listener answers); `plan.images` only has to hold the
    chosen image, shown as `initial_option` so that every `views.update` keeps it."""
    element: dict = {
        "type": "external_select",
        "action_id": IMAGE_ACTION,
        "placeholder": _text("Type part of an image name or ID" if plan.server else "Choose the server first"),
        "min_query_length": 0,  # opening the menu lists a first page; every key then narrows it
    }
    chosen = next((img for img in plan.images if img.id == plan.image_id), None)
    if chosen is not None:
        element["initial_option"] = _option(chosen.label, chosen.id)
    return {
        "type": "input",
        "block_id": IMAGE_BLOCK,
        "dispatch_action": True,
        "label": _text("Target image"),
        "hint": _text("Only active images for this server's architecture that the policy allows are listed."),
        "element": element,
    }


def image_option(choice: ImageChoice) -> dict:
    return _option(choice.label, choice.id)


def image_options(groups: Sequence[tuple[str, Sequence[dict]]]) -> dict:
    """The answer to the image type-ahead: labelled groups of `image_option`s, at most 100 in all (Slack's limit)."""
    answer: list[dict] = []
    left = 100
    for label, group in groups:
        options = list(group[:left])
        if options:
            answer.append({"label": _text(label, 75), "options": options})
            left -= len(options)
    return {"option_groups": answer} if answer else {"options": []}


def image_options_notice(text: str) -> dict:
    """One unselectable-in-effect option ("none" reads as no image) that says why there is nothing to pick."""
    return {"options": [_option(text, "none")]}


def _key_input(plan: ModalPlan) -> dict:
    element: dict = {"type": "static_select", "action_id": KEY_ACTION, "placeholder": _text("Key pair")}
    names = list(plan.keypairs)[:100] or ["(no key pairs in this project)"]
    element["options"] = [_option(name, name) for name in names]
    if plan.keyname is not None and plan.keyname in plan.keypairs:
        element["initial_option"] = _option(plan.keyname, plan.keyname)
    return {
        "type": "input",
        "block_id": KEY_BLOCK,
        "dispatch_action": True,
        "label": _text("Key pair"),
        "element": element,
    }


def _password_blocks(entry: PasswordEntry) -> list[dict]:
    if entry.mode == "link":
        return _password_link_blocks(entry)
    if entry.mode == "inline":
        warning = (
            "⚠️ Slack has no masked input: the password is *visible while you type*. It is read once on submit, "
            "stored encrypted, never shown again. Prefer a key pair."
        )
        return [
            {"type": "context", "elements": [_md(warning)]},
            {
                "type": "input",
                "block_id": f"{PASSWORD_BLOCK_PREFIX}:{entry.nonce}",
                "label": _text("Admin password"),
                "hint": _text("8 to 26 characters, three of: upper, lower, digit, special !@$%^-_=+[{}]:,./?~#*"),
                "element": {"type": "plain_text_input", "action_id": PASSWORD_ACTION, "max_length": 26},
            },
            {
                "type": "input",
                "block_id": f"{PASSWORD_CONFIRM_PREFIX}:{entry.nonce}",
                "label": _text("Admin password again"),
                "element": {"type": "plain_text_input", "action_id": PASSWORD_CONFIRM_ACTION, "max_length": 26},
            },
        ]
    return [{"type": "section", "text": _md(f"⛔ {entry.why_unavailable}")}]


def _password_link_blocks(entry: PasswordEntry) -> list[dict]:
    """The secure-page link, what is stored and until when, and who can use the link (never the password)."""
    if entry.is_set:
        who = "by you" if entry.set_by_you else "through this form's link"
        how = " (signed in with Slack)" if entry.set_verified else ""
        at = f" at {slack_date(entry.set_at, '{time}')}" if entry.set_at else ""
        status = f"✅ *Password set* {who}{at}{how}."
        if entry.password_expires_at:
            status += (
                f" Kept encrypted until {slack_date(entry.password_expires_at, '{time}')}: submit before then, or it "
                "is deleted and this form offers a new link."
            )
    else:
        status = "The password never passes through Slack: set it on the bot's own page."
        if entry.signin:
            status += " You sign in with Slack there, so only you can use the link."
    lines = [status]
    if entry.link_expires_at:
        lines.append(f"Link works once, until {slack_date(entry.link_expires_at, '{time}')}.")
    if not entry.signin:
        lines.append(
            "⚠️ Sign in with Slack is off: anyone holding this link can use it. Don't forward it or paste it anywhere."
        )
    if entry.notice:
        lines.insert(0, f"⛔ {entry.notice}")
    button = {
        "type": "button",
        "action_id": PASSWORD_LINK_ACTION,
        "text": _text("Change password" if entry.is_set else "Set password securely", 75),
        "url": entry.link or "",
    }
    return [{"type": "section", "block_id": PASSWORD_LINK_BLOCK, "text": _md("\n".join(lines)), "accessory": button}]


def _stop_input(stop_type: str) -> dict:
    options = [
        _option("Stop it first, gracefully (SOFT)", "SOFT"),
        _option("Stop it first, forcibly (HARD)", "HARD"),
    ]
    initial = options[1] if stop_type == "HARD" else options[0]
    return {
        "type": "input",
        "block_id": STOP_BLOCK,
        "label": _text("The server is running"),
        "element": {"type": "radio_buttons", "action_id": STOP_ACTION, "options": options, "initial_option": initial},
    }


def _backup_input(on: bool) -> dict:
    option = _option("Image the system disk first (a way back)", BACKUP_ON)
    return {
        "type": "input",
        "block_id": BACKUP_BLOCK,
        "optional": True,
        "dispatch_action": True,
        "label": _text("Backup"),
        "element": {
            "type": "checkboxes",
            "action_id": BACKUP_ACTION,
            "options": [option],
            **({"initial_options": [option]} if on else {}),
        },
    }


def checklist_block(checks: Iterable[Check]) -> dict:
    lines = [
        f"{LEVEL_ICON[c.level]} *{escape(c.title)}*" + (f": {escape(c.detail)}" if c.detail else "") for c in checks
    ]
    text = "*Pre-flight checks*\n" + ("\n".join(lines) if lines else "Choose an image and a login to see the checks.")
    return {"type": "section", "block_id": CHECKS_BLOCK, "text": _md(text)}


def reject_modal(request_id: str) -> dict:
    return {
        "type": "modal",
        "callback_id": REJECT_CALLBACK,
        "title": _text("Reject request", 24),
        "submit": _text("Reject", 24),
        "close": _text("Back", 24),
        "private_metadata": json.dumps({"r": request_id}),
        "blocks": [
            {"type": "section", "text": _md(f"Reject *{request_id}*? The requester is told, with your reason.")},
            {
                "type": "input",
                "block_id": REJECT_REASON_BLOCK,
                "optional": True,
                "label": _text("Reason"),
                "element": {"type": "plain_text_input", "action_id": REJECT_REASON_ACTION, "max_length": 300},
            },
        ],
    }


# ---------------------------------------------------------------- messages


def _login_text(req: ChangeRequest) -> str:
    if req.login is LoginMethod.KEYPAIR:
        return f"Key pair `{escape(req.keyname or '?')}`"
    return "Admin password (set ✓)" if req.has_password else "Admin password (not set)"


def _stop_text(req: ChangeRequest) -> str:
    return f"Yes ({req.stop_type.value})" if req.stop_first else "No (already stopped)"


def request_fields(req: ChangeRequest) -> list[dict]:
    current = req.current_image_name or req.current_image_id or "unknown"
    fields = [
        _md(f"*Server*\n{escape(req.server_name)} (`{req.server_id}`)"),
        _md(f"*Image*\n{escape(current)} → *{escape(req.target_image_name)}* ({escape(req.target_os_type)})"),
        _md(f"*Login*\n{_login_text(req)}"),
        _md(f"*Stop first*\n{_stop_text(req)}"),
        _md(f"*Requested by*\n<@{req.requester}>"),
        _md(f"*Reason*\n{escape(req.reason)}", 2000),
    ]
    if req.rollback_of:
        fields.append(_md(f"*Rollback of*\n`{req.rollback_of}` (its backup image)"))
    if req.backup_wanted:
        fields.append(_md("*Backup first*\nYes: an image of the system disk"))
    if req.ticket:
        fields.append(_md(f"*Ticket*\n{escape(req.ticket)}"))
    if req.notify_channels:
        fields.append(_md("*Notify*\n" + " ".join(f"<#{c}>" for c in req.notify_channels)))
    return fields[:10]


def approval_card(req: ChangeRequest) -> tuple[str, list[dict]]:
    """The card approvers act on: every parameter, a fingerprint, the plan's checklist, and the buttons while pending.

    The checklist comes from the request itself, so every re-render (approvals counted, decision) keeps it.
    """
    checks = [Check.decode(line) for line in req.checklist]
    text = (
        f"Change OS request {req.id}: {escape(req.server_name)} → {escape(req.target_image_name)} "
        f"(requested by <@{req.requester}>)"
    )
    blocks: list[dict] = [
        {"type": "header", "text": _text(f"Change OS request {req.id}", 150)},
        {"type": "section", "fields": request_fields(req)},
    ]
    meta = [f"Fingerprint `{req.fingerprint()}`", f"approvals {len(req.approvals)}/{req.approvals_required}"]
    if req.state is RequestState.PENDING_APPROVAL and req.expires_at is not None:
        meta.append(f"expires {slack_date(req.expires_at)}")
    blocks.append({"type": "context", "elements": [_md(" · ".join(meta))]})
    if checks:
        blocks.append(checklist_block(checks))
    if req.state is RequestState.PENDING_APPROVAL:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"cr_actions:{req.id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": APPROVE_ACTION,
                        "style": "primary",
                        "text": _text("Approve", 75),
                        "value": req.id,
                        "confirm": {
                            "title": _text("Approve this change?", 100),
                            "text": _md(
                                f"{escape(req.server_name)} will get *{escape(req.target_image_name)}*. "
                                "Its system disk is recreated: data on it is lost.",
                                300,
                            ),
                            "confirm": _text("Approve", 30),
                            "deny": _text("Back", 30),
                            "style": "primary",
                        },
                    },
                    {
                        "type": "button",
                        "action_id": REJECT_ACTION,
                        "style": "danger",
                        "text": _text("Reject", 75),
                        "value": req.id,
                    },
                    {"type": "button", "action_id": CANCEL_ACTION, "text": _text("Cancel", 75), "value": req.id},
                ],
            }
        )
    else:
        blocks.append({"type": "context", "elements": [_md(decision_line(req))]})
    return text, blocks


def decision_line(req: ChangeRequest) -> str:
    who = f"<@{req.decided_by}>" if req.decided_by else "the bot"
    note = f": {escape(req.decision_note)}" if req.decision_note else ""
    match req.state:
        case RequestState.REJECTED:
            return f"🚫 Rejected by {who}{note}"
        case RequestState.CANCELLED:
            return f"🗑️ Cancelled by {who}{note}"
        case RequestState.EXPIRED:
            return "⌛ Expired: nobody approved it in time. Ask again with /changeos if it is still needed."
        case _:
            approvers = ", ".join(f"<@{u}>" for u in req.approvals) or who
            return f"👍 Approved by {approvers}. Progress in the thread below."


def status_message(req: ChangeRequest, now: datetime, *, backup_exists: bool = True) -> tuple[str, list[dict]]:
    """The one message edited in place while the change runs; once ended, with **Roll back** while the backup
    exists (`backup_exists` False once retention deleted it)."""
    label = STATE_LABEL[req.state]
    text = f"{req.id} {escape(req.server_name)}: {label}"
    lines = [f"*{label}*"]
    if req.job_progress and req.is_live:
        lines.append(escape(req.job_progress))
    if req.overdue and req.is_live:
        lines.append("⚠️ Taking longer than expected; still checking with the cloud.")
    if req.result:
        lines.append(escape(req.result))
    end = req.finished_at or now
    meta = [f"`{req.id}`", f"elapsed {elapsed(req.submitted_at or req.updated_at, end)}"]
    if req.stop_job_id and req.state is RequestState.STOPPING:
        meta.append(f"stop job `{req.stop_job_id}`")
    if req.job_id:
        meta.append(f"job `{req.job_id}`")
    if req.backup_sent_at:
        took = elapsed(req.backup_sent_at, req.backup_done_at or end)
        meta.append(f"backup `{escape(req.backup_image_name or '?')}` {took}")
    blocks: list[dict] = [
        {
            "type": "section",
            "text": _md(f"*{escape(req.server_name)}* → *{escape(req.target_image_name)}*\n" + "\n".join(lines), 3000),
        },
        {"type": "context", "elements": [_md(" · ".join(meta))]},
    ]
    if req.is_terminal and req.backup_image_id and backup_exists:
        blocks.append(rollback_actions(req))
    return text, blocks


def rollback_actions(req: ChangeRequest) -> dict:
    """**Roll back to <image>**: the modal again, pre-filled with the backup; login asked again, approval as usual."""
    name = req.backup_image_name or req.backup_image_id or "the backup"
    return {
        "type": "actions",
        "block_id": f"cr_rollback:{req.id}",
        "elements": [
            {
                "type": "button",
                "action_id": ROLLBACK_ACTION,
                "text": _text(f"Roll back to {name}", 75),
                "value": req.id,
            }
        ],
    }


def transition_reply(req: ChangeRequest) -> str:
    """A thread reply for a state change, told from the request as it was right after that change."""
    label = STATE_LABEL[req.state]
    match req.state:
        case RequestState.SUCCEEDED:
            return f"{label}: {escape(req.server_name)} now runs {escape(req.target_image_name)}. " + _mentions(req)
        case RequestState.FAILED:
            return f"{label}: {escape(req.result or 'the change did not complete')} " + _mentions(req)
        case RequestState.REJECTED | RequestState.CANCELLED | RequestState.EXPIRED:
            return f"{decision_line(req)} <@{req.requester}>"
        case RequestState.STOPPING:
            return f"{label} ({req.stop_type.value})"
        case RequestState.BACKING_UP:
            return f"{label}: an image first; nothing is changed until it is ready"
        case RequestState.SUBMITTING if req.backup_image_id:
            return f"{label} (backup `{escape(req.backup_image_name or req.backup_image_id)}` is ready)"
        case RequestState.RUNNING if req.job_id:
            return f"{label} (job `{req.job_id}`)"
        case RequestState.RUNNING | RequestState.RECONCILING:
            return f"{label} ({escape(req.job_progress or 'no job id: following the server')})"
        case _:
            return label


def _mentions(req: ChangeRequest) -> str:
    people = dict.fromkeys([req.requester, *req.approvals])
    return " ".join(f"<@{u}>" for u in people)


def notify_start(req: ChangeRequest, link: str | None) -> str:
    where = f" <{link}|Follow the thread>." if link else ""
    return (
        f"🔄 *{req.id}*: changing the OS of *{escape(req.server_name)}* to *{escape(req.target_image_name)}* "
        f"(requested by <@{req.requester}>, approved by {_mentions_of(req.approvals)}).{where}"
    )


def notify_end(req: ChangeRequest, link: str | None) -> str:
    where = f" <{link}|Details in the thread>." if link else ""
    if req.state is RequestState.SUCCEEDED:
        head = f"✅ *{req.id}*: *{escape(req.server_name)}* now runs *{escape(req.target_image_name)}*."
    else:
        head = f"❌ *{req.id}*: the OS change of *{escape(req.server_name)}* failed: {escape(req.result or '')}"
    return f"{head}{where} {_mentions(req)}"


def _mentions_of(users: Iterable[str]) -> str:
    return ", ".join(f"<@{u}>" for u in users) or "self-service"


# ---------------------------------------------------------------- command answers


def request_line(req: ChangeRequest) -> str:
    return (
        f"`{req.id}` {escape(req.server_name)} → {escape(req.target_image_name)}: {STATE_LABEL[req.state]} "
        f"(by <@{req.requester}>, {slack_date(req.created_at)})"
    )


def list_text(requests: Sequence[ChangeRequest]) -> str:
    if not requests:
        return "No live change requests. Start one with `/changeos SERVER [IMAGE]`."
    return "*Live change requests*\n" + "\n".join(request_line(r) for r in requests[:40])
