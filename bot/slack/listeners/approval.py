"""Approve / Reject / Cancel on the approval card. Refusals are ephemeral and audited; decisions edit the card."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import views
from bot.slack.modal_state import read_metadata

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)


def _click(body: dict[str, Any]) -> tuple[str, str, str]:
    user = (body.get("user") or {}).get("id", "")
    action = (body.get("actions") or [{}])[0]
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
    return user, str(action.get("value") or ""), channel


def register(app: AsyncApp, rt: Runtime) -> None:
    async def refuse(channel: str, user: str, text: str) -> None:
        await rt.notifier.ephemeral(channel, user, f"⛔ {views.escape(text)}")  # refusals name the server

    @app.action(views.APPROVE_ACTION)
    async def on_approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        user, request_id, channel = _click(body)
        outcome = await rt.workflow.approve(request_id, user, await rt.directory.groups_of(user))
        if outcome.refused:
            await refuse(channel, user, outcome.refused)
            return
        if outcome.request is not None and outcome.request.state.value == "approved":
            rt.tracker.wake()
            await rt.presenter.sync(request_id, outcome.request)
        elif outcome.request is not None:
            await rt.presenter.refresh_card(outcome.request)  # one of several approvals counted

    @app.action(views.REJECT_ACTION)
    async def on_reject(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        user, request_id, channel = _click(body)
        request = await rt.store.get(request_id)
        if request is None:
            await refuse(channel, user, f"There is no change request {request_id}.")
            return
        decision = rt.policy.may_approve(user, await rt.directory.groups_of(user), request)
        if not decision.allowed:
            outcome = await rt.workflow.reject(request_id, user, [], None)  # refuses and audits the attempt
            await refuse(channel, user, outcome.refused or decision.reason)
            return
        try:
            await client.views_open(trigger_id=body["trigger_id"], view=views.reject_modal(request_id))
        except SlackApiError as exc:
            log.warning("views.open for reject failed: %s", exc.response.get("error"))
            await refuse(channel, user, "Slack did not open the reject form in time. Click Reject again.")

    @app.view(views.REJECT_CALLBACK)
    async def on_reject_submit(ack: AsyncAck, body: dict[str, Any]) -> None:
        view = body.get("view") or {}
        request_id = str(read_metadata(view).get("r", ""))
        user = (body.get("user") or {}).get("id", "")
        values = (view.get("state") or {}).get("values") or {}
        note = ((values.get(views.REJECT_REASON_BLOCK) or {}).get(views.REJECT_REASON_ACTION) or {}).get("value")
        groups = await rt.directory.groups_of(user)
        outcome = await rt.workflow.reject(request_id, user, groups, (note or "").strip() or None)
        if outcome.refused:
            await ack(response_action="errors", errors={views.REJECT_REASON_BLOCK: outcome.refused[:300]})
            return
        await ack()
        await rt.presenter.sync(request_id, outcome.request)

    @app.action(views.CANCEL_ACTION)
    async def on_cancel(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        user, request_id, channel = _click(body)
        outcome = await rt.workflow.cancel(request_id, user)
        if outcome.refused:
            await refuse(channel, user, outcome.refused)
            return
        await rt.presenter.sync(request_id, outcome.request)
