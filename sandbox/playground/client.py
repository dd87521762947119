"""Slack's side of every interaction the page makes: the signed request Slack would send the bot, and what Slack
shows with the bot's answer (the ack body of a command, a submission's `response_action`, an options list).

Nothing here decides for the bot: requests go to its real `POST /slack/events`, built by the same builders the
tests use (sandbox.devtools.slack_requests), and the page sees only what the fake Slack then holds.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from sandbox.devtools import slack_requests as sr
from sandbox.devtools.fake_slack import FakeSlack
from sandbox.playground.cast import Cast
from sandbox.playground.composer import escape_command_text

SLACKBOT = "Slackbot"


class RefusedByClient(ValueError):
    """What the page asked for is something Slack's client would not let a person do; the message says why."""


@dataclass(frozen=True)
class Answer:
    """What the page shows after an interaction: the modal closed, errors under its inputs, or a note."""

    closed: bool = False
    errors: dict[str, str] | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"closed": self.closed, "errors": self.errors or {}, "note": self.note}


class SlackClient:
    """One per playground; every method is one thing a person does on the page."""

    def __init__(self, fake: FakeSlack, sender: sr.SlackSender, cast: Cast) -> None:
        self.fake = fake
        self.sender = sender
        self.cast = cast
        self._names = {p.id: p.name for p in cast.people}
        self._channel_names = {c.id: c.name for c in cast.channels}

    def _user(self, user_id: str) -> str:
        if user_id not in self._names:
            raise RefusedByClient(f"unknown user {user_id!r}: pick one of {', '.join(self._names)}")
        return self._names[user_id]

    def _trigger(self, user_id: str) -> str:
        trigger = sr.new_trigger_id()
        self.fake.bind_trigger(trigger, user_id)
        return trigger

    def _modal(self, user_id: str, view_id: str) -> dict[str, Any]:
        """The view, when it is the one on top of `user_id`'s screen: the only view a person can act in."""
        top = self.fake.open_modal(user_id)
        if top is None or top["id"] != view_id:
            raise RefusedByClient("that modal is not open for this user (switch back to the person who opened it)")
        return self.fake.views[view_id]

    def _trouble(self, channel: str, user_id: str, what: str, response: httpx.Response) -> Answer:
        """Slack tells the person when the app answered badly; the page shows it the same way."""
        text = f"{what} failed: the app answered HTTP {response.status_code}."
        self.fake.show_ephemeral(channel, user_id, text)
        return Answer(note=text)

    # ------------------------------------------------------------------ slash command

    async def command(self, user_id: str, channel: str, command: str, text: str) -> Answer:
        name = self._user(user_id)
        if command != "/changeos":
            self.fake.show_ephemeral(channel, user_id, f"{command} is not a valid command here. Try /changeos help.")
            return Answer(note="not a command of this app")
        escaped = escape_command_text(
            text, {n: i for i, n in self._channel_names.items()}, {n: i for i, n in self._names.items()}
        )
        response_url = self.fake.response_url(secrets.token_hex(6), channel=channel, user_id=user_id)
        body = sr.slash_command(
            escaped,
            response_url=response_url,
            user_id=user_id,
            user_name=name,
            channel_id=channel,
            channel_name=self._channel_names.get(channel, channel),
            trigger_id=self._trigger(user_id),
        )
        response = await self.sender.send(body)
        if response.status_code != 200:
            return self._trouble(channel, user_id, f"/changeos {text}", response)
        if response.content:
            shown = _ack_message(response)
            if shown.get("response_type") == "in_channel":
                self.fake.show_in_channel(channel, str(shown.get("text") or ""), list(shown.get("blocks") or []))
            else:
                self.fake.show_ephemeral(channel, user_id, str(shown.get("text") or ""), shown.get("blocks"))
        return Answer()

    # ------------------------------------------------------------------ clicks and choices

    async def message_action(
        self,
        user_id: str,
        channel: str,
        ts: str,
        action_id: str,
        block_id: str | None,
        *,
        value: str | None = None,
        selected_option: dict[str, Any] | None = None,
    ) -> Answer:
        self._user(user_id)
        try:
            message = self.fake.message(channel, ts)
        except KeyError:
            raise RefusedByClient("that message is gone") from None
        body = sr.block_actions(
            action_id=action_id,
            block_id=block_id,
            user_id=user_id,
            user_name=self._names[user_id],
            container="message",
            message=message.as_payload(),
            channel_id=channel,
            channel_name=self._channel_names.get(channel, channel),
            response_url=self.fake.response_url(secrets.token_hex(6), channel=channel, message_ts=ts, user_id=user_id),
            trigger_id=self._trigger(user_id),
            value=value,
            selected_option=selected_option,
        )
        response = await self.sender.send(body)
        return self._trouble(channel, user_id, "That click", response) if response.status_code != 200 else Answer()

    async def view_action(
        self,
        user_id: str,
        view_id: str,
        action_id: str,
        block_id: str | None,
        values: dict[str, Any],
        *,
        value: str | None = None,
        selected_option: dict[str, Any] | None = None,
    ) -> Answer:
        self._modal(user_id, view_id)
        self.fake.set_view_state(view_id, values)  # Slack keeps what was typed; views.update preserves it
        body = sr.block_actions(
            action_id=action_id,
            block_id=block_id,
            user_id=user_id,
            user_name=self._names[user_id],
            container="view",
            view=self.fake.views[view_id],
            state_values=values,
            trigger_id=self._trigger(user_id),
            value=value,
            selected_option=selected_option,
        )
        response = await self.sender.send(body)
        return Answer(note=f"the app answered HTTP {response.status_code}") if response.status_code != 200 else Answer()

    async def suggest(
        self, user_id: str, view_id: str, action_id: str, block_id: str, query: str, values: dict[str, Any]
    ) -> dict[str, Any]:
        """The options of an external_select, asked of the bot's options endpoint as Slack asks (block_suggestion)."""
        view = dict(self._modal(user_id, view_id))
        view["state"] = {"values": values}
        body = sr.block_suggestion(view=view, action_id=action_id, block_id=block_id, value=query, user_id=user_id)
        response = await self.sender.send(body)
        if response.status_code != 200 or not response.content:
            return {"options": [], "note": f"the app answered HTTP {response.status_code} with no options"}
        try:
            answer = response.json()
        except ValueError:
            return {"options": [], "note": "the app's answer was not JSON"}
        return answer if isinstance(answer, dict) else {"options": []}

    # ------------------------------------------------------------------ submit and close

    async def submit(self, user_id: str, view_id: str, values: dict[str, Any]) -> Answer:
        self._modal(user_id, view_id)
        self.fake.set_view_state(view_id, values)
        body = sr.view_submission(
            view=self.fake.views[view_id], values=values, user_id=user_id, user_name=self._names[user_id]
        )
        response = await self.sender.send(body)
        if response.status_code != 200:
            return Answer(note=f"We had some trouble connecting (the app answered HTTP {response.status_code}).")
        if not response.content:
            self.fake.close_modal(view_id)
            return Answer(closed=True)
        try:
            answer = response.json()
        except ValueError:
            return Answer(note="The app's answer to the submission was not JSON; the modal stays open.")
        action = answer.get("response_action") if isinstance(answer, dict) else None
        if action == "errors":
            errors = answer.get("errors")
            return Answer(errors={str(k): str(v) for k, v in (errors or {}).items()})
        if action in ("update", "push"):
            problems = self.fake.answer_view(view_id, action, answer.get("view"))
            return Answer(note="Slack refused the app's view: " + "; ".join(problems)) if problems else Answer()
        if action == "clear":
            self.fake.close_modal(view_id, whole_stack=True)
            return Answer(closed=True)
        return Answer(note=f"unknown response_action {action!r}; the modal stays open")

    async def close(self, user_id: str, view_id: str) -> Answer:
        view = self._modal(user_id, view_id)
        self.fake.close_modal(view_id, whole_stack=bool(view.get("clear_on_close")))
        if view.get("notify_on_close"):
            await self.sender.send(sr.view_closed(view=view, user_id=user_id))
        return Answer(closed=True)


def _ack_message(response: httpx.Response) -> dict[str, Any]:
    """A command's ack body as Slack reads it: JSON with text/blocks/response_type, or plain text."""
    if "json" in response.headers.get("content-type", ""):
        try:
            parsed = json.loads(response.content)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return parsed
    return {"text": response.text}
