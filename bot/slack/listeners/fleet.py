"""`/changeos fleet …`: resolve the selector, pre-flight every server, show the fleet plan, and the fleet's buttons.

The plan of an open modal stays in this process (a modal's private_metadata holds 3,000 characters, not 500
servers); a form submitted after a restart is asked to run the command again. The rules live in the services:
`plan.evaluate_plan` per server, `domain/fleet` for the approval and the rollout, `services/fleet` for the rest.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.cloud import CloudAPIError, CloudClient, CloudError, Image, Server
from bot.domain.fleet import (
    Action,
    Approve,
    Cancel,
    Click,
    Event,
    FleetApproval,
    FleetSpec,
    LeftOut,
    Reject,
    Step,
    max_fleet_problem,
    new_rollout,
)
from bot.domain.fleet_command import FleetCommand, FleetSelector
from bot.domain.policy import Policy, Rule
from bot.domain.preflight import CheckLevel
from bot.domain.request import LoginMethod, StopType
from bot.domain.waves import WaveError, cut, wave_sizes
from bot.services.fleet import FleetService
from bot.services.plan import PlanInputs, PlanPolicy, evaluate_plan
from bot.services.planner import Planner
from bot.slack import texts, views
from bot.slack.after_ack import AfterAck
from bot.slack.directory import Directory
from bot.slack.fleet_views import (
    BLOCK_FLEET,
    FLEET_ABORT,
    FLEET_APPROVE,
    FLEET_BLOCKED_ACTION,
    FLEET_CANCEL,
    FLEET_CONTINUE,
    FLEET_MODAL_CALLBACK,
    FLEET_PAUSE,
    FLEET_REJECT,
    FLEET_RESUME,
    FLEET_ROLLBACK,
    LEAVE_OUT,
    FleetPlan,
    ServerCheck,
    fleet_plan_modal,
)
from bot.slack.listeners.acks import ack_then
from bot.slack.modal_state import read_metadata
from bot.slack.notifier import Notifier
from bot.slack.replies import Replies, ReplyTo

log = logging.getLogger(__name__)

PREFLIGHT_CONCURRENCY = 8
_CLICKS: dict[str, Action] = {
    FLEET_CONTINUE: "continue",
    FLEET_PAUSE: "pause",
    FLEET_RESUME: "resume",
    FLEET_ABORT: "abort",
    FLEET_ROLLBACK: "rollback",
}


@dataclass
class _Draft:
    """An open fleet modal: the command, what the checks found, and the plan as shown."""

    user: str
    channel: str
    cmd: FleetCommand
    image: Image
    checks: list[ServerCheck]
    left_out: list[LeftOut]
    approval: FleetApproval
    approvals_channel: str
    notify: tuple[str, ...]
    plan: FleetPlan


class FleetCard:
    def __init__(
        self,
        *,
        planner: Planner,
        policy: Policy,
        cloud: CloudClient,
        fleet: FleetService,
        notifier: Notifier,
        directory: Directory,
    ) -> None:
        self.planner = planner
        self.policy = policy
        self.cloud = cloud
        self.fleet = fleet
        self.notifier = notifier
        self.directory = directory
        self.replies = Replies(notifier)
        self._drafts: OrderedDict[str, _Draft] = OrderedDict()

    async def _groups(self, user: str) -> set[str]:
        try:
            async with asyncio.timeout(1.5):
                return await self.directory.groups_of(user)
        except TimeoutError:
            return set()

    # ------------------------------------------------------------------ the command

    async def open(self, body: dict[str, Any], client: AsyncWebClient, cmd: FleetCommand) -> None:
        """After the ack: a "looking up" modal at once (the trigger lasts 3 s), then the fleet's plan."""
        user, channel = body.get("user_id", ""), body.get("channel_id", "")
        reply = ReplyTo.of_command(body)
        groups = await self._groups(user)
        if not self.policy.can_request_anything(user, groups):
            await self.replies.send(reply, texts.NOT_IN_POLICY)
            return
        if cmd.password:
            await self.replies.send(
                reply,
                "A fleet logs in with a key pair: give --key NAME (or none, to keep each server's own key pair). "
                "For a password, change servers one at a time: /changeos SERVER --password.",
            )
            return
        meta: dict[str, Any] = {"d": secrets.token_urlsafe(12), "c": channel, "u": user}
        try:
            opened = await client.views_open(trigger_id=body["trigger_id"], view=views.loading_modal(meta, None))
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))
            await self.replies.send(reply, "I could not open the form (Slack said the trigger expired). Run it again.")
            return
        view = opened["view"]
        try:
            new_view = await self._plan_view(meta, user, channel, groups, cmd)
        except CloudError as exc:
            new_view = views.message_modal(meta, "Cloud unavailable", texts.cloud_trouble(exc))
        await self._update(client, view["id"], new_view)

    async def _update(self, client: AsyncWebClient, view_id: str, view: dict[str, Any]) -> None:
        try:
            await client.views_update(view_id=view_id, view=view)
        except SlackApiError as exc:
            log.info("views.update skipped: %s", exc.response.get("error"))

    async def _plan_view(
        self, meta: dict[str, Any], user: str, channel: str, groups: set[str], cmd: FleetCommand
    ) -> dict[str, Any]:
        servers, left_out = await self.resolve(cmd.selector)
        if not servers and not left_out:
            return views.message_modal(meta, "No servers", empty_selector(cmd.selector))
        eligible: list[tuple[Server, Rule]] = []
        for server in servers:
            decision = self.planner.may_request(user, groups, server)
            if decision.allowed and decision.rule is not None:
                eligible.append((server, decision.rule))
            else:
                left_out.append(LeftOut(id=server.id, name=server.name, reason=decision.reason or "not allowed"))
        if not eligible:
            lines = "\n".join(f"• {views.escape(lo.name or lo.id)}: {views.escape(lo.reason)}" for lo in left_out[:20])
            return views.message_modal(
                meta, "Nothing to change", f"No server of {cmd.selector.describe()} can be changed by you:\n{lines}"
            )
        first = await self.planner.facts(eligible[0][0].id)
        found = await self.planner.resolve_image(first, eligible[0][1], cmd.image)
        if found.image is None:
            return views.message_modal(
                meta,
                "Image not found",
                views.escape(
                    f"No single image is named {cmd.image} for these servers. Give the exact name or ID with --image."
                ),
            )
        image = found.image
        checks = await self._preflight(eligible, image, cmd)
        approval = FleetApproval.of(self.policy, [rule for _, rule in eligible])
        strictest = max((rule for _, rule in eligible), key=self.policy.approvals_needed)
        notify = tuple(
            dict.fromkeys([c for _, rule in eligible for c in self.policy.notify_channels_for(rule)] + list(cmd.notify))
        )
        draft = _Draft(
            user=user,
            channel=channel,
            cmd=cmd,
            image=image,
            checks=checks,
            left_out=left_out,
            approval=approval,
            approvals_channel=self.policy.approvals_channel_for(strictest, channel),
            notify=notify,
            plan=FleetPlan(metadata=meta, selector="", image_name="", servers=()),
        )
        draft.plan = self._fleet_plan(meta, draft, LEAVE_OUT)
        self._drafts[meta["d"]] = draft
        while len(self._drafts) > 1000:
            self._drafts.popitem(last=False)
        return fleet_plan_modal(draft.plan)

    def _fleet_plan(self, meta: dict[str, Any], d: _Draft, choice: str) -> FleetPlan:
        going = [c for c in d.checks if c.level is not CheckLevel.BLOCK or choice == BLOCK_FLEET]
        problems = [p for p in (max_fleet_problem(self.policy, len(going)), d.approval.problem()) if p]
        if not d.cmd.reason:
            problems.append("A fleet needs a reason for approvers and the audit trail: add --reason TEXT.")
        sizes: list[int] = []
        try:
            sizes = wave_sizes(d.cmd.waves, len(going)) if going else []
        except WaveError as exc:
            problems.append(str(exc))
        need = d.approval.approvals_required
        return FleetPlan(
            metadata=meta,
            selector=d.cmd.selector.describe(),
            image_name=d.image.name,
            servers=d.checks,
            left_out=d.left_out,
            wave_sizes=sizes,
            parallel=d.cmd.parallel,
            max_failures=d.cmd.max_failures,
            pause=d.cmd.pause,
            login=f"key pair {d.cmd.keyname}" if d.cmd.keyname else "each server's own key pair",
            approval="self-service"
            if need == 0
            else f"{need} approval(s), the strictest of rules " + ", ".join(f"'{n}'" for n in d.approval.rule_names),
            problems=problems,
            blocked_choice=choice,
        )

    async def resolve(self, selector: FleetSelector) -> tuple[list[Server], list[LeftOut]]:
        """The servers a selector names, in its order (names), or sorted by name (pattern, tag)."""
        left_out: list[LeftOut] = []
        if selector.tags:
            tagged = await self.cloud.servers_by_tag({t.key: t.value for t in selector.tags})
            found = await asyncio.gather(*(self._by_id(t.id) for t in tagged))
            return sorted((s for s in found if s is not None), key=lambda s: (s.name, s.id)), left_out
        if selector.patterns:
            everything = await self.cloud.list_servers(limit=1000)
            matched = [s for s in everything if any(fnmatch.fnmatchcase(s.name, p) for p in selector.patterns)]
            return sorted(matched, key=lambda s: (s.name, s.id)), left_out
        servers: list[Server] = []
        for name in selector.names:
            by_id = await self._by_id(name) if _looks_like_id(name) else None
            matches = [by_id] if by_id is not None else await self.cloud.find_servers(name)
            if len(matches) == 1:
                servers.append(matches[0])
            elif matches:
                left_out.append(
                    LeftOut(id=name, name=name, reason=f"{len(matches)} servers have this name: give its ID")
                )
            else:
                left_out.append(LeftOut(id=name, name=name, reason="not found"))
        unique = {s.id: s for s in servers}
        return list(unique.values()), left_out

    async def _by_id(self, server_id: str) -> Server | None:
        try:
            return await self.cloud.get_server(server_id)
        except CloudAPIError as exc:
            if exc.status == 404:
                return None
            raise

    async def _preflight(
        self, eligible: list[tuple[Server, Rule]], image: Image, cmd: FleetCommand
    ) -> list[ServerCheck]:
        """The single-server checklist, per server (a few at a time)."""
        gate = asyncio.Semaphore(PREFLIGHT_CONCURRENCY)

        async def one(server: Server, rule: Rule) -> ServerCheck:
            async with gate:
                facts = await self.planner.facts(server.id)
            keyname = cmd.keyname or (server.key_name if server.key_name in facts.keypair_names else None)
            inputs = PlanInputs(
                image_id=image.id,
                login=LoginMethod.KEYPAIR,
                keyname=keyname,
                stop_type=StopType(cmd.stop.value) if cmd.stop else StopType.SOFT,
                reason=cmd.reason,
                ticket=cmd.ticket,
            )
            plan = evaluate_plan(
                inputs,
                facts.server_facts,
                facts.image(image.id) or image,
                facts.keypair_names,
                PlanPolicy(self.policy, rule, self.fleet.keypair_login),
                quota=await self.planner.image_quota() if self.policy.backup_mode(rule) != "off" else None,
            )
            return ServerCheck(server.id, server.name, server.status, plan.checks)

        return list(await asyncio.gather(*(one(server, rule) for server, rule in eligible)))

    async def choice_changed(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        """Leave the blocked servers out, or block the whole fleet: the modal shows the other plan."""
        view = body.get("view") or {}
        meta = read_metadata(view)
        draft = self._drafts.get(str(meta.get("d", "")))
        user = (body.get("user") or {}).get("id", "")
        if draft is None or draft.user != user:
            return
        action = (body.get("actions") or [{}])[0]
        choice = str((action.get("selected_option") or {}).get("value") or LEAVE_OUT)
        draft.plan = self._fleet_plan(meta, draft, BLOCK_FLEET if choice == BLOCK_FLEET else LEAVE_OUT)
        await self._update(client, view["id"], fleet_plan_modal(draft.plan))

    # ------------------------------------------------------------------ submit

    async def submit(self, ack: AsyncAck, body: dict[str, Any]) -> Step | None:
        """The answer to the form; the fleet to store and announce after it, or None when the form was refused."""
        view = body.get("view") or {}
        meta = read_metadata(view)
        user = (body.get("user") or {}).get("id", "")
        draft = self._drafts.get(str(meta.get("d", "")))
        if draft is None or draft.user != user:
            text = "The bot no longer knows this fleet form (it restarted, or the form is old). Run the command again."
            await ack(response_action="update", view=views.message_modal(meta, "Run it again", text))
            return None
        plan = draft.plan
        blocked = {c.id for c in draft.checks if c.level is CheckLevel.BLOCK}
        if plan.problems or (blocked and plan.blocked_choice == BLOCK_FLEET):
            await ack(response_action="update", view=fleet_plan_modal(plan))
            return None
        going = [c for c in draft.checks if c.id not in blocked]
        left = list(draft.left_out) + [
            LeftOut(id=c.id, name=c.name, reason=c.line().split(": ", 1)[-1]) for c in draft.checks if c.id in blocked
        ]
        names = {c.id: c.name for c in going}
        try:
            waves = cut([c.id for c in going], draft.cmd.waves)
        except WaveError as exc:
            await ack(response_action="update", view=views.message_modal(meta, "Waves", views.escape(str(exc))))
            return None
        cmd = draft.cmd
        first = new_rollout(
            requester=user,
            channel=draft.approvals_channel,
            image_id=draft.image.id,
            image_name=draft.image.name,
            waves=[[(sid, names[sid]) for sid in wave] for wave in waves],
            approval=draft.approval,
            now=datetime.now(UTC),
            max_failures=cmd.max_failures,
            parallel=cmd.parallel,
            pause_between_waves=cmd.pause,
            selector=cmd.selector.describe(),
            left_out=left,
            spec=FleetSpec(
                keyname=cmd.keyname,
                stop_type=cmd.stop.value if cmd.stop else "SOFT",
                reason=cmd.reason or "",
                ticket=cmd.ticket,
                notify=draft.notify,
            ),
            origin_channel=draft.channel,
        )
        self._drafts.pop(str(meta["d"]), None)
        await ack()
        return first

    async def announce(self, first: Step) -> None:
        try:
            rollout = await self.fleet.create(first)
        except Exception:
            log.exception("storing a fleet failed after the ack")
            await self.notifier.ephemeral(first.rollout.origin_channel, first.rollout.requester, texts.INTERNAL_ERROR)
            return
        where = f"<#{rollout.channel}>"
        text = (
            f"▶️ {rollout.id} starts now (self-service): {len(rollout.servers)} servers, see {where}."
            if rollout.approvals_required == 0
            else f"📨 {rollout.id} ({len(rollout.servers)} servers) is waiting for approval in {where}."
        )
        await self.notifier.ephemeral(rollout.origin_channel, rollout.requester, text)

    # ------------------------------------------------------------------ the fleet's buttons

    async def clicked(self, body: dict[str, Any], _client: AsyncWebClient) -> None:
        user = (body.get("user") or {}).get("id", "")
        action = (body.get("actions") or [{}])[0]
        rollout_id = str(action.get("value") or "")
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
        groups = frozenset(await self._groups(user))
        event: Event
        match action.get("action_id"):
            case "fl_approve":
                event = Approve(user, groups)
            case "fl_reject":
                event = Reject(user, groups)
            case "fl_cancel":
                event = Cancel(user)
            case other:
                event = Click(_CLICKS[str(other)], user, groups)
        if await self.fleet.handle(rollout_id, event) is None:
            await self.notifier.ephemeral(channel, user, f"⛔ There is no fleet {views.escape(rollout_id)}.")


def register(app: AsyncApp, card: FleetCard, later: AfterAck) -> None:
    """The fleet modal and buttons (the `/changeos` command itself is registered once, in listeners/changeos)."""
    app.action(FLEET_BLOCKED_ACTION)(ack_then(later, card.choice_changed))
    for action_id in (FLEET_APPROVE, FLEET_REJECT, FLEET_CANCEL, *_CLICKS):
        app.action(action_id)(ack_then(later, card.clicked))

    async def on_closed(ack: AsyncAck) -> None:
        await ack()

    app.view_closed(FLEET_MODAL_CALLBACK)(on_closed)

    @app.view(FLEET_MODAL_CALLBACK)
    async def on_submit(ack: AsyncAck, body: dict[str, Any]) -> None:
        first = await card.submit(ack, body)
        if first is not None:
            later.start(partial(card.announce, first), name="storing a fleet")


def empty_selector(selector: FleetSelector) -> str:
    how = {
        "tag": "Check the tag's key and value (they are case-sensitive), or list the servers by name.",
        "pattern": "Check the pattern (shell style: web-* or web-0[1-3]; case-sensitive).",
        "names": "Check the names or IDs.",
    }[selector.kind]
    return f"No server matched {views.escape(selector.describe())}, so there is nothing to roll out. {how}"


def _looks_like_id(name: str) -> bool:
    return len(name) == 36 and name.count("-") == 4
