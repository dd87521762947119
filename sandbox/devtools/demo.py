"""`ecsbot demo`: the whole flow offline, printed as people in Slack would see it.

Runs a LocalStack (the simulator, a fake Slack and the real bot on loopback, in a temporary directory), plays the
requester and the approver, and follows what the bot sends to Slack in order, so a newcomer sees the product work
in seconds, with nothing to configure and nothing left behind. CI runs it too and checks the transcript.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from bot.domain.fleet import Rollout, ServerPhase
from bot.domain.passwords import generate_password
from bot.domain.request import ChangeRequest, RequestState
from bot.slack import views
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.fake_slack import KNOWN_USERS, Call, FakeSlack, ResponsePost
from sandbox.devtools.stack import (
    APPROVALS_CHANNEL,
    APPROVER,
    COMMAND_CHANNEL,
    DEFAULT_POLICY,
    INCIDENT_CHANNEL,
    REQUESTER,
    LocalStack,
    StackOptions,
)
from sandbox.simulator.faults import FailJob, FaultSpec

if TYPE_CHECKING:
    from bot.app import Bot

COMMAND_TEXT = (
    'web-01 ubuntu-22.04 --key ops-key --reason "CVE-2026-1234 kernel fix" --ticket INC-4242 '
    "--notify <#C01INCIDNT1|incident-42>"
)
PASSWORD_COMMAND_TEXT = (
    'web-01 ubuntu-22.04 --reason "CVE-2026-1234 kernel fix" --ticket INC-4242 --notify <#C01INCIDNT1|incident-42>'
)
FLEET_COMMAND_TEXT = (
    'fleet web-0[1-3] --image ubuntu-22.04 --key ops-key --waves 1,rest --reason "CVE-2026-1234 kernel fix"'
)
FAIL_CODE = "Ecs.1002"
FAIL_REASON = "OpenStack access timed out. Stop the operation and try again later."
MASK = "••••••••"
DEFAULT_SPEED = 60.0  # simulator time scale: a 3-5 minute OS change takes a few seconds
DEADLINE = 50.0  # seconds for the whole run; "well under a minute" on any machine that runs the tests

CHANNEL_NAMES = {
    COMMAND_CHANNEL: sr.CHANNEL_NAME,
    APPROVALS_CHANNEL: "ecs-approvals",
    INCIDENT_CHANNEL: "incident-42",
}
USER_NAMES = {uid: profile["name"] for uid, profile in KNOWN_USERS.items()}
QUIET_METHODS = frozenset({"auth.test", "chat.getPermalink", "usergroups.users.list", "users.info"})


class DemoError(Exception):
    """Something the demo did not expect; the message says what, in words."""


# ----------------------------------------------------------------------------------------------------------------
# Rendering (pure)


@dataclass(frozen=True)
class Style:
    """ANSI styling, or none: the same transcript either way, so tests read the plain one."""

    color: bool = False

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def code(self, text: str) -> str:
        return self._wrap("36", text)

    def place(self, text: str) -> str:
        return self._wrap("1;35", text)

    def person(self, text: str) -> str:
        return self._wrap("1;32", text)

    def good(self, text: str) -> str:
        return self._wrap("1;32", text)

    def bad(self, text: str) -> str:
        return self._wrap("1;31", text)


_ENTITY = re.compile(r"<([^<>]+)>")
_BOLD = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])")
_CODE = re.compile(r"`([^`\n]+)`")
_SHORTCODE = re.compile(r":([a-z0-9_+-]+):")
_EMOJI = {"hourglass_flowing_sand": "⏳", "white_check_mark": "✅", "x": "❌", "warning": "⚠️", "no_entry": "⛔"}
_USER_ID = re.compile(r"\b[UW]0[0-9A-Z]{7,}\b")


def user_name(user_id: str) -> str:
    return "@" + USER_NAMES.get(user_id, user_id)


def channel_name(channel_id: str, given: str | None = None) -> str:
    return "#" + (given or CHANNEL_NAMES.get(channel_id, channel_id))


def _entity(match: re.Match[str]) -> str:
    inner = match.group(1)
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return user_name(target[1:])
    if target.startswith("#"):
        return channel_name(target[1:], label or None)
    if target.startswith("!date^"):
        return label or target
    if target.startswith("!subteam^"):
        return label or "@" + target.split("^", 1)[1]
    if target.startswith("!"):
        return "@" + (label or target[1:])
    return label or target


def mrkdwn(text: str, style: Style) -> str:
    """Slack mrkdwn as a terminal shows it: *bold*, `code`, <@U…> and <#C…> names, dates' fallbacks; emoji kept
    (the few :shortcodes: the bot uses become the characters Slack would draw)."""
    text = _ENTITY.sub(_entity, text)
    text = _BOLD.sub(lambda m: style.bold(m.group(1)), text)
    text = _CODE.sub(lambda m: style.code(m.group(1)), text)
    text = _SHORTCODE.sub(lambda m: _EMOJI.get(m.group(1), m.group(0)), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def _text_of(obj: dict[str, Any] | None, style: Style) -> str:
    if not obj:
        return ""
    text = str(obj.get("text") or "")
    return mrkdwn(text, style) if obj.get("type") == "mrkdwn" else text


def _button(element: dict[str, Any], style: Style) -> str:
    label = f"[ {_text_of(element.get('text'), style)} ]"
    if element.get("style") == "primary":
        return style.good(label)
    if element.get("style") == "danger":
        return style.bad(label)
    return style.bold(label)


def _option_text(option: dict[str, Any] | None, style: Style) -> str:
    return _text_of((option or {}).get("text"), style)


def _field_line(text: str) -> str:
    """A field "*Label*\\nvalue\\nmore" becomes "Label: value · more" (the label is bold already)."""
    head, *rest = [part for part in text.split("\n") if part.strip()]
    return f"{head}: {' · '.join(rest)}" if rest else head


def element_value(element: dict[str, Any], style: Style, filled: dict[str, str] | None = None) -> str:
    """What an input shows: the chosen option, the text typed, or a mask for a password someone typed."""
    kind = element.get("type")
    action = str(element.get("action_id", ""))
    if filled and action in filled:
        return filled[action]
    if kind == "radio_buttons":
        chosen = (element.get("initial_option") or {}).get("value")
        marks = [
            f"({'•' if option.get('value') == chosen else ' '}) {_option_text(option, style)}"
            for option in element.get("options") or []
        ]
        return "  ".join(marks)
    if kind in ("static_select", "external_select"):
        chosen_text = _option_text(element.get("initial_option"), style)
        return f"[ {chosen_text} ▾ ]" if chosen_text else "[ choose… ▾ ]"
    if kind == "multi_conversations_select":
        return " ".join(channel_name(c) for c in element.get("initial_conversations") or []) or "—"
    if kind == "plain_text_input":
        return str(element.get("initial_value") or "—")
    return f"({kind})"


def render_blocks(blocks: Iterable[dict[str, Any]], style: Style, filled: dict[str, str] | None = None) -> list[str]:
    """Block Kit as lines of text: headers, sections and their fields, inputs with their values, context, buttons."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(style.bold(_text_of(block.get("text"), style).upper()))
        elif kind == "section":
            if block.get("text"):
                lines.extend(_text_of(block["text"], style).split("\n"))
            for item in block.get("fields") or []:
                lines.append(_field_line(_text_of(item, style)))
            accessory = block.get("accessory")
            if isinstance(accessory, dict) and accessory.get("type") == "button":
                lines.append(_button(accessory, style))
        elif kind == "context":
            parts = [_text_of(e, style) for e in block.get("elements") or [] if isinstance(e, dict)]
            lines.append(style.dim(" · ".join(p for p in parts if p)))
        elif kind == "input":
            label = _text_of(block.get("label"), style)
            optional = style.dim(" (optional)") if block.get("optional") else ""
            lines.append(f"{label}{optional}: {element_value(block.get('element') or {}, style, filled)}")
        elif kind == "actions":
            buttons = [_button(e, style) for e in block.get("elements") or [] if e.get("type") == "button"]
            lines.append("  ".join(buttons))
        elif kind == "divider":
            lines.append(style.dim("─" * 40))
    return lines


def render_view(view: dict[str, Any], style: Style, filled: dict[str, str] | None = None) -> list[str]:
    title = _text_of(view.get("title"), style)
    lines = [style.bold(f"┌─ {title} ─")]
    lines += [f"│ {line}" for line in render_blocks(view.get("blocks") or [], style, filled)]
    buttons = [f"[ {_text_of(view.get('close'), style)} ]"] if view.get("close") else []
    if view.get("submit"):
        buttons.append(style.good(f"[ {_text_of(view['submit'], style)} ]"))
    lines.append("└─ " + "  ".join(buttons))
    return lines


def audit_lines(events: Iterable[Any], started: datetime, style: Style) -> list[str]:
    lines = []
    for event in events:
        offset = max(0.0, (event.at - started).total_seconds())
        who = "bot" if event.actor == "bot" else user_name(event.actor)
        move = ""
        if event.from_state or event.to_state:
            before = event.from_state.value if event.from_state else "—"
            after = event.to_state.value if event.to_state else "—"
            move = f" {before} → {after}"
        detail = (
            f"  {_USER_ID.sub(lambda m: user_name(m.group(0)), mrkdwn(event.detail, style))}" if event.detail else ""
        )
        lines.append(f"{offset:6.2f}s  {who:<7}{style.bold(f'{event.action:<11}')}{move}{detail}")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# The transcript


@dataclass
class Transcript:
    """Prints events as a chat log: a clock (seconds since the start), the place, then the message's lines."""

    out: TextIO
    style: Style
    started: float = field(default_factory=time.monotonic)
    calls_seen: int = 0
    responses_seen: int = 0
    card_ts: set[str] = field(default_factory=set)
    status_ts: set[str] = field(default_factory=set)
    _last_card: dict[str, list[str]] = field(default_factory=dict)
    modal_user: str = REQUESTER
    modal_filled: dict[str, str] = field(default_factory=dict)

    def write(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def event(self, at: float, where: str, lines: list[str]) -> None:
        clock = self.style.dim(f"[{max(0.0, at - self.started):5.2f}s]")
        head, *rest = lines or [""]
        self.write(f"{clock} {self.style.place(where)}  {head}")
        for line in rest:
            self.write(f"         {line}")

    def now(self, where: str, lines: list[str]) -> None:
        self.event(time.monotonic(), where, lines)

    def note(self, text: str) -> None:
        self.write(self.style.dim(f"         ── {text}"))

    # -- following the fake Slack's traffic --------------------------------------------------------------------

    def flush(self, fake: FakeSlack) -> None:
        """Print every call and response_url post not printed yet, in the order Slack received them."""
        while True:
            call = fake.calls[self.calls_seen] if self.calls_seen < len(fake.calls) else None
            post = fake.responses[self.responses_seen] if self.responses_seen < len(fake.responses) else None
            if call is None and post is None:
                return
            if call is not None and (post is None or call.time <= post.time):
                self.calls_seen += 1
                self._call(call)
            else:
                assert post is not None
                self.responses_seen += 1
                self._response(post)

    def _response(self, post: ResponsePost) -> None:
        text = str(post.body.get("text") or "")
        blocks = post.body.get("blocks") or []
        lines = render_blocks(blocks, self.style) if blocks else mrkdwn(text, self.style).split("\n")
        if post.channel and post.user:
            where = f"{channel_name(post.channel)} (only {user_name(post.user)} sees this)"
        else:
            where = f"reply to {user_name(self.modal_user)} (only they see it)"
        self.event(post.time, where, lines)

    def _call(self, call: Call) -> None:
        if call.method in QUIET_METHODS:
            return
        body = call.body
        if not call.ok:
            self.event(call.time, "slack", [self.style.bad(f"{call.method} refused: {call.error or call.status}")])
            return
        if call.method in ("views.open", "views.update", "views.push"):
            view = body.get("view") or {}
            verb = "opens" if call.method == "views.open" else "updates"
            self.event(
                call.time,
                f"modal for {user_name(self.modal_user)}",
                [f"{verb}:", *render_view(view, self.style, self.modal_filled)],
            )
        elif call.method == "chat.postMessage":
            self._post(call)
        elif call.method == "chat.update":
            self._update(call)
        elif call.method == "chat.postEphemeral":
            where = f"{channel_name(str(body.get('channel')))} (only {user_name(str(body.get('user')))} sees this)"
            self.event(call.time, where, self._message_lines(body))
        else:
            self.event(call.time, "slack", [f"{call.method}"])

    def _message_lines(self, body: dict[str, Any]) -> list[str]:
        blocks = body.get("blocks") or []
        if blocks:
            return render_blocks(blocks, self.style)
        return mrkdwn(str(body.get("text") or ""), self.style).split("\n")

    def _post(self, call: Call) -> None:
        body = call.body
        channel = channel_name(str(body.get("channel")))
        ts = str((call.response or {}).get("ts") or "")
        blocks = body.get("blocks") or []
        if body.get("thread_ts"):
            if blocks:
                self.status_ts.add(ts)
                self.event(call.time, f"{channel} » thread", ["status message:", *self._message_lines(body)])
            else:
                self.event(call.time, f"{channel} » thread", self._message_lines(body))
            return
        if any(b.get("type") == "header" for b in blocks):
            self.card_ts.add(ts)
            self._last_card[ts] = _card_state(blocks, self.style)
            self.event(call.time, channel, ["approval card:", *self._message_lines(body)])
            return
        self.event(call.time, channel, self._message_lines(body))

    def _update(self, call: Call) -> None:
        body = call.body
        channel = channel_name(str(body.get("channel")))
        ts = str(body.get("ts") or "")
        lines = self._message_lines(body)
        if ts in self.card_ts:
            changed = _card_state(body.get("blocks") or [], self.style)
            if self._last_card.get(ts) == changed:
                return  # an edit that changes nothing a person would notice (e.g. the checklist folded away)
            self._last_card[ts] = changed
            self.event(call.time, channel, ["✎ approval card edited:", *changed])
        elif ts in self.status_ts:
            self.event(call.time, f"{channel} » thread", ["✎ status message edited:", *lines])
        else:
            self.event(call.time, channel, ["✎ message edited:", *lines])


def _card_state(blocks: list[dict[str, Any]], style: Style) -> list[str]:
    """The parts of an approval card that change: its context lines and its buttons."""
    kept = [b for b in blocks if b.get("type") in ("context", "actions")]
    return render_blocks(kept, style)


# ----------------------------------------------------------------------------------------------------------------
# The run


def _use_color(color: bool, out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(color and callable(isatty) and isatty() and not os.environ.get("NO_COLOR"))


async def _wait(fake: FakeSlack, condition: Callable[[], Any], *, within: float, what: str) -> Any:
    """Wait for `condition` (a coroutine function when it reads the store), woken by Slack traffic and re-checked
    often (store changes make no traffic)."""
    try:
        return await fake.wait_until(condition, timeout=within, what=what)
    except TimeoutError:
        raise DemoError(f"timed out after {within:g}s waiting for {what}") from None


class _Demo:
    def __init__(self, stack: LocalStack, t: Transcript, *, password: str | None) -> None:
        self.stack = stack
        self.t = t
        self.fake = stack.slack
        self.password = password

    @property
    def rt(self) -> Bot:
        assert self.stack.rt is not None
        return self.stack.rt

    async def run(self) -> ChangeRequest:
        stack, t = self.stack, self.t
        text = PASSWORD_COMMAND_TEXT if self.password is not None else COMMAND_TEXT
        t.now(f"{channel_name(COMMAND_CHANNEL)} · {user_name(REQUESTER)}", [mrkdwn(f"/changeos {text}", t.style)])
        response = await stack.command(text)
        if response.status_code != 200:
            raise DemoError(f"the bot answered the slash command with HTTP {response.status_code}")
        view = await stack.plan_view()
        t.flush(self.fake)
        if self.password is not None:
            view = await self._choose_password(view)
        request = await self._submit(view)
        await self._approve(request)
        return await self._follow(request.id)

    async def rollback(self, first: ChangeRequest) -> ChangeRequest:
        """After a change with a backup: **Roll back** on the final message, the pre-filled form, one approval."""
        t, fake, stack = self.t, self.fake, self.stack
        if first.status_ts is None or first.backup_image_id is None:
            raise DemoError(f"{first.id} ended without a backup to roll back to")
        status = fake.message(first.approvals_channel, first.status_ts)
        t.now(
            f"{channel_name(first.approvals_channel)} · {user_name(REQUESTER)}",
            [f"{user_name(REQUESTER)} clicks [ Roll back to {first.backup_image_name} ]"],
        )
        updates = len(fake.calls_to("views.update"))
        body = sr.block_actions(
            user_id=REQUESTER,
            action_id=views.ROLLBACK_ACTION,
            value=first.id,
            container="message",
            message=status.as_payload(),
            channel_id=first.approvals_channel,
            response_url=fake.response_url("demo-rollback"),
        )
        assert stack.sender is not None
        await stack.sender.send(body)
        await _wait(fake, lambda: len(fake.calls_to("views.update")) > updates, within=10, what="the rollback form")
        t.flush(fake)
        view = fake.views[fake.calls_to("views.update")[updates].body["view_id"]]
        request = await self._submit(view)
        await self._approve(request)
        return await self._follow(request.id)

    async def fleet(self) -> Rollout:
        """`/changeos fleet` over 3 servers in 2 waves: the plan, one approval, the one message kept up to date."""
        stack, t, fake = self.stack, self.t, self.fake
        t.now(
            f"{channel_name(COMMAND_CHANNEL)} · {user_name(REQUESTER)}",
            [mrkdwn(f"/changeos {FLEET_COMMAND_TEXT}", t.style)],
        )
        response = await stack.command(FLEET_COMMAND_TEXT)
        if response.status_code != 200:
            raise DemoError(f"the bot answered the slash command with HTTP {response.status_code}")
        view = await stack.plan_view()
        t.flush(fake)
        t.now(f"modal for {user_name(REQUESTER)}", [f"{user_name(REQUESTER)} clicks [ {view['submit']['text']} ]"])
        reply = await stack.submit(view)
        if reply.status_code != 200 or reply.text:
            raise DemoError(f"the fleet modal did not close on submit: HTTP {reply.status_code} {reply.text[:300]}")

        async def shown() -> Rollout | None:
            return next((r for r in await self.rt.store.unfinished_rollouts() if r.message_ts), None)

        rollout: Rollout = await _wait(fake, shown, within=10, what="the fleet message")
        t.flush(fake)
        assert rollout.message_ts is not None
        t.now(
            f"{channel_name(rollout.channel)} · {user_name(APPROVER)}",
            [f"{user_name(APPROVER)} clicks [ Approve ] on {rollout.id}"],
        )
        body = sr.block_actions(
            user_id=APPROVER,
            action_id="fl_approve",
            value=rollout.id,
            container="message",
            message=fake.message(rollout.channel, rollout.message_ts).as_payload(),
            channel_id=rollout.channel,
            response_url=fake.response_url("demo-fleet"),
        )
        assert stack.sender is not None
        if (await stack.sender.send(body)).status_code != 200:
            raise DemoError("the bot did not take the fleet's Approve click")

        async def ended() -> Rollout | None:
            t.flush(fake)
            r = await self.rt.store.get_rollout(rollout.id)
            told = [m for m in fake.messages(INCIDENT_CHANNEL) if rollout.id in m.text and "starts" not in m.text]
            return r if r is not None and r.finished and told else None

        final: Rollout = await _wait(fake, ended, within=DEADLINE, what=f"{rollout.id} to finish")
        t.flush(fake)
        return final

    async def _choose_password(self, view: dict[str, Any]) -> dict[str, Any]:
        t, fake = self.t, self.fake
        t.now(f"modal for {user_name(REQUESTER)}", [f"{user_name(REQUESTER)} chooses “Admin password”"])
        updates = len(fake.calls_to("views.update"))
        state = sr.state_from_view(view, {views.LOGIN_BLOCK: sr.radio_value("password", "Admin password")})
        body = sr.block_actions(
            action_id=views.LOGIN_ACTION,
            user_id=REQUESTER,
            container="view",
            view=fake.views[view["id"]],
            value="password",
            state_values=state,
        )
        assert self.stack.sender is not None
        await self.stack.sender.send(body)
        await _wait(
            fake,
            lambda: len(fake.calls_to("views.update")) > updates,
            within=10,
            what="the modal with password inputs",
        )
        t.flush(fake)
        rebuilt = fake.views[view["id"]]
        if not _password_blocks(rebuilt):
            raise DemoError("the modal did not offer password inputs after choosing “Admin password”")
        return rebuilt

    async def _submit(self, view: dict[str, Any]) -> ChangeRequest:
        before = {r.id for r in await self.rt.store.recent(50)}
        notes = len(self.fake.told(REQUESTER))
        t, fake = self.t, self.fake
        overrides: dict[str, Any] = {}
        action = f"{user_name(REQUESTER)} clicks [ Request approval ]"
        if self.password is not None:
            for block_id in _password_blocks(view):
                overrides[block_id] = sr.text_value(self.password)
            t.modal_filled = {views.PASSWORD_ACTION: MASK, views.PASSWORD_CONFIRM_ACTION: MASK}
            action = f"{user_name(REQUESTER)} types the admin password twice ({MASK}) and clicks [ Request approval ]"
        t.now(f"modal for {user_name(REQUESTER)}", [action])
        reply = await self.stack.submit(view, overrides)
        if reply.status_code != 200 or reply.text:
            raise DemoError(f"the modal did not close on submit: HTTP {reply.status_code} {reply.text[:300]}")

        async def carded() -> ChangeRequest | None:
            live = [r for r in await self.rt.store.live() if r.requester == REQUESTER and r.id not in before]
            return live[0] if live and live[0].approval_ts else None

        request = await _wait(fake, carded, within=10, what="the approval card")
        await _wait(fake, lambda: len(fake.told(REQUESTER)) > notes, within=5, what="the note to the requester")
        t.flush(fake)
        return request

    async def _approve(self, request: ChangeRequest) -> None:
        t = self.t
        t.now(
            f"{channel_name(request.approvals_channel)} · {user_name(APPROVER)}",
            [f"{user_name(APPROVER)} clicks [ Approve ] and confirms “Approve this change?”"],
        )
        reply = await self.stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
        if reply.status_code != 200:
            raise DemoError(f"the bot answered the Approve click with HTTP {reply.status_code}")

    async def _follow(self, request_id: str) -> ChangeRequest:
        """Print the bot's traffic as it happens until the request ended and its end post has landed."""
        fake, t = self.fake, self.t

        async def ended() -> ChangeRequest | None:
            t.flush(fake)
            request = await self.rt.store.get(request_id)
            if request is not None and request.is_terminal and request.notified_state is request.state:
                return request
            return None

        final: ChangeRequest = await _wait(fake, ended, within=DEADLINE, what=f"{request_id} to finish")
        t.flush(fake)
        return final


def _password_blocks(view: dict[str, Any]) -> list[str]:
    prefixes = (views.PASSWORD_BLOCK_PREFIX + ":", views.PASSWORD_CONFIRM_PREFIX + ":")
    return [str(b["block_id"]) for b in view.get("blocks") or [] if str(b.get("block_id", "")).startswith(prefixes)]


def _verdict(stack: LocalStack, request: ChangeRequest, *, fail: bool) -> list[str]:
    """What went differently from what the demo promised; empty when it did what it said."""
    problems: list[str] = []
    fake = stack.slack
    ends = [m.text for m in fake.messages(INCIDENT_CHANNEL)]
    if fail:
        if request.state is not RequestState.FAILED:
            problems.append(f"expected the cloud to fail the job, but the request ended {request.state.value}")
        if FAIL_REASON not in (request.result or "") or FAIL_CODE not in (request.result or ""):
            problems.append("the bot did not pass on the cloud's error code and reason")
        if not any("failed" in text for text in ends):
            problems.append(f"no failure post reached {channel_name(INCIDENT_CHANNEL)}")
    else:
        if request.state is not RequestState.SUCCEEDED:
            problems.append(f"expected success, but the request ended {request.state.value}: {request.result}")
        elif stack.sim.state.servers[request.server_id].image_id != request.target_image_id:
            problems.append("the simulator's server does not run the target image")
        if not any("now runs" in text for text in ends):
            problems.append(f"no success post reached {channel_name(INCIDENT_CHANNEL)}")
    refused = fake.errors()
    if refused:
        problems.append("Slack would have refused: " + ", ".join(f"{c.method} ({c.error})" for c in refused[:5]))
    return problems


def _banner(t: Transcript, *, password: bool, fail: bool) -> None:
    s = t.style
    path = "admin password login" if password else "key pair login"
    if fail:
        path += ", the cloud fails the job"
    t.write(s.bold(f"ecsbot demo · {path}"))
    t.write(
        s.dim(
            "Everything runs on this machine: the Huawei Cloud simulator, a local fake Slack and the real bot, "
            "with a temporary database."
        )
    )
    t.write(
        s.dim(
            f"People: {user_name(REQUESTER)} asks, {user_name(APPROVER)} approves. Channels: "
            f"{channel_name(COMMAND_CHANNEL)} (the command), {channel_name(APPROVALS_CHANNEL)} (approvals), "
            f"{channel_name(INCIDENT_CHANNEL)} (notify)."
        )
    )
    t.write()


async def _summary(t: Transcript, stack: LocalStack, request: ChangeRequest, wall_start: datetime) -> None:
    s = t.style
    t.write()
    label = views.STATE_LABEL[request.state]
    colour = s.good if request.state is RequestState.SUCCEEDED else s.bad
    t.write(s.bold("Result  ") + colour(f"{label} · {request.id}") + f"  {mrkdwn(request.result or '', s)}")
    t.write()
    t.write(s.bold(f"Audit trail of {request.id}") + s.dim(" (append-only, in the SQLite store)"))
    assert stack.rt is not None
    for line in audit_lines(await stack.rt.store.audit(request.id), wall_start, s):
        t.write("  " + line)


def _fleet_verdict(stack: LocalStack, r: Rollout) -> list[str]:
    problems = [f"{s.label} ended {s.phase.value}: {s.reason}" for s in r.servers if s.phase is not ServerPhase.HEALTHY]
    if [len(r.in_wave(w)) for w in range(r.wave_count)] != [1, 2]:
        problems.append("the fleet was not cut into waves of 1 and 2")
    top = [m for m in stack.slack.messages(r.channel) if m.thread_ts in (None, m.ts)]
    if len(top) != 1:
        problems.append(f"{len(top)} fleet messages in {channel_name(r.channel)}, not one edited in place")
    refused = stack.slack.errors()
    if refused:
        problems.append("Slack would have refused: " + ", ".join(f"{c.method} ({c.error})" for c in refused[:5]))
    return problems


async def run_fleet_demo(*, color: bool = True, out: TextIO = sys.stdout, speed: float = DEFAULT_SPEED) -> int:
    """A fleet of 3 in 2 waves (a canary, then 2): 0 when every server ends healthy under one message, else 1."""
    t = Transcript(out=out, style=Style(_use_color(color, out)))
    t.write(t.style.bold("ecsbot demo · a fleet of 3 servers in 2 waves"))
    t.write(
        t.style.dim(
            "The simulator, a local fake Slack and the real bot, on this machine. One approval, a canary first."
        )
    )
    t.write()
    options = StackOptions(
        speed=speed,
        poll_interval=0.2,
        first_poll=0.05,
        deadline=DEADLINE,
        seed=7,
        extra_settings={"slack_app_token": None, "public_url": None},
    )
    try:
        async with LocalStack(options) as stack:
            t.started = time.monotonic()
            try:
                final = await _Demo(stack, t, password=None).fleet()
            finally:
                t.flush(stack.slack)
            problems = _fleet_verdict(stack, final)
    except (DemoError, TimeoutError) as exc:
        t.write(t.style.bad(f"✗ demo stopped: {exc}"))
        return 1
    except Exception as exc:  # the demo is a first impression: say what broke, never a bare traceback
        t.write(t.style.bad(f"✗ demo stopped by an unexpected error: {type(exc).__name__}: {exc}"))
        return 1
    t.write()
    for problem in problems:
        t.write(t.style.bad(f"✗ {problem}"))
    if problems:
        return 1
    t.write(
        t.style.good(f"✓ demo done in {time.monotonic() - t.started:.1f}s: {final.id} changed 3 servers in 2 waves.")
    )
    return 0


async def run_demo(
    *,
    password: bool = False,
    fail: bool = False,
    color: bool = True,
    out: TextIO = sys.stdout,
    speed: float = DEFAULT_SPEED,
    admin_password: str | None = None,
    rollback: bool = False,
) -> int:
    """Run the flow once; 0 when it did what it promised (success, or with `fail` the explained failure), else 1.

    `admin_password` is the password the requester types with `password` (a generated strong one by default);
    the transcript only ever shows it masked.
    """
    t = Transcript(out=out, style=Style(_use_color(color, out)))
    _banner(t, password=password, fail=fail)
    options = StackOptions(
        speed=speed,
        poll_interval=0.2,
        first_poll=0.05,
        deadline=DEADLINE,
        seed=7,
        # The demo must ignore a real configuration in the environment: no Socket Mode, no public password page.
        extra_settings={"slack_app_token": None, "public_url": None},
        # --rollback: the rule asks for a backup first, and a rollback needs one approval.
        policy=DEFAULT_POLICY + 'backup = "required"\n' if rollback else DEFAULT_POLICY,
    )
    secret = (admin_password or generate_password("Linux")) if password else None
    try:
        async with LocalStack(options) as stack:
            if fail:
                stack.sim.faults.add(FaultSpec(fail_jobs=FailJob(error_code=FAIL_CODE, fail_reason=FAIL_REASON)))
            t.started = time.monotonic()
            wall_start = datetime.now(UTC)
            try:
                demo = _Demo(stack, t, password=secret)
                final = await demo.run()
                if rollback:
                    first = final
                    await _summary(t, stack, first, wall_start)
                    final = await demo.rollback(first)
                    image = stack.sim.state.servers[first.server_id].os_image_id
                    if image != first.current_image_id:
                        raise DemoError(f"the rollback left the server on {image}, not {first.current_image_id}")
            finally:
                t.flush(stack.slack)
            await _summary(t, stack, final, wall_start)
            problems = _verdict(stack, final, fail=fail)
    except (DemoError, TimeoutError) as exc:
        t.write(t.style.bad(f"✗ demo stopped: {exc}"))
        return 1
    except Exception as exc:  # the demo is a first impression: say what broke, never a bare traceback
        t.write(t.style.bad(f"✗ demo stopped by an unexpected error: {type(exc).__name__}: {exc}"))
        return 1
    t.write()
    if problems:
        for problem in problems:
            t.write(t.style.bad(f"✗ {problem}"))
        return 1
    if fail:
        t.write(t.style.good("✓ demo done: the cloud failed the job and the bot said why, everywhere it should."))
    else:
        t.write(t.style.good(f"✓ demo done in {time.monotonic() - t.started:.1f}s: the OS change succeeded."))
    t.write(t.style.dim(next_hint(password=password, fail=fail)))
    return 0


def next_hint(*, password: bool, fail: bool) -> str:
    """What to try after this run: the demo variants not just shown, then the way to a real workspace."""
    others = [
        f"`{command}`"
        for command, shown in (
            ("ecsbot demo", not password and not fail),
            ("ecsbot demo --password", password),
            ("ecsbot demo --fail", fail),
        )
        if not shown
    ]
    return (
        f"Next: {' and '.join(others)}. For a real workspace and cloud: create the app from "
        "config/slack-manifest.yml, set the environment, then `ecsbot check --online`."
    )
