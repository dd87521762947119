"""Approve / Reject / Cancel on the approval card. Refusals are ephemeral and audited; decisions edit the card.

Each click is acked at once; the decision runs after the answer (bot/slack/after_ack.py).
"""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.domain.policy import Policy
from bot.services.workflow import Workflow
from bot.slack import views
from bot.slack.after_ack import AfterAck
from bot.slack.directory import Directory
from bot.slack.listeners.acks import ack_then, tell_moved
from bot.slack.modal_state import read_metadata
from bot.slack.notifier import Notifier
from bot.slack.presenter import Presenter
from bot.store import Store

log = logging.getLogger(__name__)


def _click(body: dict[str, Any]) -> tuple[str, str, str]:
    user = (body.get("user") or {}).get("id", "")
    action = (body.get("actions") or [{}])[0]
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
    return user, str(action.get("value") or ""), channel


def register(
    app: AsyncApp,
    *,
    workflow: Workflow,
    store: Store,
    policy: Policy,
    presenter: Presenter,
    notifier: Notifier,
    directory: Directory,
    later: AfterAck,
) -> None:
    async def refuse(channel: str, user: str, text: str) -> None:
        await notifier.ephemeral(channel, user, f"⛔ {views.escape(text)}")  # refusals name the server

    async def approve(body: dict[str, Any], _client: AsyncWebClient) -> None:
        user, request_id, channel = _click(body)
        outcome = await workflow.approve(request_id, user, await directory.groups_of(user))  # wakes the tracker
        if outcome.refused:
            await refuse(channel, user, outcome.refused)
            return
        if outcome.request is not None and outcome.request.state.value == "approved":
            await presenter.sync(request_id, outcome.request)
        elif outcome.request is not None:
            await presenter.refresh_card(outcome.request)  # one of several approvals counted

    async def open_reject_form(body: dict[str, Any], client: AsyncWebClient) -> None:
        user, request_id, channel = _click(body)
        request = await store.get(request_id)
        if request is None:
            await refuse(channel, user, f"There is no change request {request_id}.")
            return
        decision = policy.may_approve(user, await directory.groups_of(user), request)
        if not decision.allowed:
            outcome = await workflow.reject(request_id, user, [], None)  # refuses and audits the attempt
            await refuse(channel, user, outcome.refused or decision.reason)
            return
        try:
            await client.views_open(trigger_id=body["trigger_id"], view=views.reject_modal(request_id))
        except SlackApiError as exc:
            log.warning("views.open for reject failed: %s", exc.response.get("error"))
            await refuse(channel, user, "Slack did not open the reject form in time. Click Reject again.")

    async def cancel(body: dict[str, Any], _client: AsyncWebClient) -> None:
        user, request_id, channel = _click(body)
        outcome = await workflow.cancel(request_id, user)
        if outcome.refused:
            await refuse(channel, user, outcome.refused)
            return
        await presenter.sync(request_id, outcome.request)

    app.action(views.APPROVE_ACTION)(ack_then(later, approve))
    app.action(views.REJECT_ACTION)(ack_then(later, open_reject_form))
    app.action(views.CANCEL_ACTION)(ack_then(later, cancel))

    @app.view(views.REJECT_CALLBACK)
    async def on_reject_submit(ack: AsyncAck, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        request_id = str(read_metadata(view).get("r", ""))
        user = (body.get("user") or {}).get("id", "")
        values = (view.get("state") or {}).get("values") or {}
        note = ((values.get(views.REJECT_REASON_BLOCK) or {}).get(views.REJECT_REASON_ACTION) or {}).get("value")
        outcome = await workflow.reject(request_id, user, await directory.groups_of(user), (note or "").strip() or None)
        if outcome.refused:
            await ack(response_action="errors", errors={views.REJECT_REASON_BLOCK: outcome.refused[:300]})
            return
        await ack()
        if outcome.request is not None:
            tell_moved(later, presenter, outcome.request)
