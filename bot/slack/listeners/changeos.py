"""`/changeos` and its plan-card modal: open fast, look the cloud up, show the checks, validate again on submit.

The listeners only translate: a Slack payload becomes calls (the planner's facts, `plan.evaluate_plan`, the
workflow), and the result becomes a view or an answer. The rules live in bot/services/plan.py. The slow work runs
after the answer went out (bot/slack/after_ack.py).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.cloud import CloudError, Image, Server
from bot.domain.command import (
    BackupsCommand,
    CancelCommand,
    ChangeCommand,
    HelpCommand,
    HistoryCommand,
    ListCommand,
    RollbackCommand,
    StatusCommand,
    UsageError,
)
from bot.domain.fleet_command import FleetCommand
from bot.domain.fleet_command import parse as parse_text
from bot.domain.policy import Policy
from bot.domain.preflight import Field
from bot.domain.request import ChangeRequest, LoginMethod, StopType
from bot.domain.since import since_moment
from bot.services.imagematch import Resolution
from bot.services.plan import (
    PasswordInput,
    PlanInputs,
    PlanPolicy,
    build_change_request,
    default_inputs,
    evaluate_plan,
    image_reply,
    missing_inputs,
    rollback_refusal,
)
from bot.services.planner import CloudFacts, Planner
from bot.services.workflow import DraftClosed, DraftEnd, Workflow
from bot.slack import history_view, texts, views
from bot.slack.after_ack import AfterAck
from bot.slack.directory import Directory
from bot.slack.listeners.acks import ack_only, ack_then, tell_moved
from bot.slack.modal_state import ModalInput, read_input, read_metadata
from bot.slack.notifier import Notifier
from bot.slack.password_watch import PasswordWatch
from bot.slack.presenter import Presenter
from bot.slack.replies import Replies, ReplyTo
from bot.store import ServerBusyError, Store

log = logging.getLogger(__name__)

SUBMIT_RECHECK_SECONDS = 2.0  # the cloud gets this long to confirm the plan before the 3 s view_submission deadline
OPTIONS_SECONDS = 2.5  # the image type-ahead answers within Slack's 3 s, with what it has by then


class IssuedLink(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def expires_at(self) -> datetime: ...


class FleetOpener(Protocol):
    async def open(self, body: dict[str, Any], client: AsyncWebClient, cmd: FleetCommand) -> None: ...


class PasswordLinks(Protocol):
    """What the form needs of the secure password page (bot/web/password_page.py): a link per draft."""

    @property
    def signin(self) -> object | None: ...  # Sign in with Slack, when the page asks for it

    async def issue(self, *, draft_id: str, user_id: str, os_type: str) -> IssuedLink: ...


def register(app: AsyncApp, card: PlanCard, later: AfterAck) -> None:
    """`later` runs what follows each ack (the form, the lookups, the announcements) once Slack has its answer."""

    async def sorry(body: dict[str, Any]) -> None:
        await card.replies.send(ReplyTo.of_command(body), texts.INTERNAL_ERROR)

    async def sorry_click(body: dict[str, Any]) -> None:
        user, _, channel = _click(body)
        await card.tell(channel, user, texts.INTERNAL_ERROR)

    # Bolt tries listeners in the order they were added (~15 µs each): the command first, since its ack is the one
    # a person waits for (bench/ack.py); then the type-ahead, which is asked on every key.
    @app.command("/changeos")
    async def on_command(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        try:
            follow_up = await card.command(ack, body)
        except Exception:
            log.exception("/changeos failed")
            if ack.response is None:
                await ack(text=texts.INTERNAL_ERROR, response_type="ephemeral")
            else:
                await card.replies.send(ReplyTo.of_command(body), texts.INTERNAL_ERROR)
            return
        if isinstance(follow_up, ChangeRequest):  # cancelled: the card and the thread say so
            tell_moved(later, card.presenter, follow_up)
        elif follow_up is FORM:
            later.start(partial(card.open, body, client), name="opening the form", on_failure=partial(sorry, body))

    @app.options(views.IMAGE_ACTION)
    async def on_image_options(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack(**await card.image_options(body))

    @app.view_closed(views.MODAL_CALLBACK)
    async def on_closed(ack: AsyncAck, body: dict[str, Any]) -> None:
        await card.password_closed(body)  # quick and local: its links are dead before Slack hears back
        await ack()

    for action in (views.IMAGE_ACTION, views.LOGIN_ACTION, views.KEY_ACTION, views.SERVER_ACTION):
        app.action(action)(ack_then(later, card.refresh))
    app.action(views.PASSWORD_LINK_ACTION)(ack_only)  # a URL button still sends an action; nothing to do
    app.action(views.BACKUP_ACTION)(ack_then(later, card.refresh))
    app.action(views.ROLLBACK_ACTION)(ack_then(later, card.rollback_clicked, on_failure=sorry_click))

    @app.view(views.MODAL_CALLBACK)
    async def on_submit(ack: AsyncAck, body: dict[str, Any]) -> None:
        try:
            stored = await card.submit(ack, body)
        except Exception:
            log.exception("plan submission failed")  # the scrubber keeps state.values out of the log
            if ack.response is None:
                await ack(response_action="errors", errors={views.REASON_BLOCK: texts.INTERNAL_ERROR[:300]})
            return
        if stored is not None:
            later.start(partial(card.announce, stored), name=f"announcing {stored.id}")


class _Form(enum.Enum):
    FORM = "form"


FORM = _Form.FORM  # `command`'s word for "the form (or the backups' list) follows the ack"


@dataclass
class _Draft:
    """What the bot remembers of an open modal, so the secure page can refresh it ("password set ✓")."""

    view_id: str
    meta: dict[str, Any]
    user: str
    chosen: ModalInput = field(default_factory=ModalInput)


class PlanCard:
    """The form's state between Slack payloads (open drafts, password timers) and what each payload asks of it."""

    def __init__(
        self,
        *,
        planner: Planner,
        policy: Policy,
        workflow: Workflow,
        store: Store,
        presenter: Presenter,
        notifier: Notifier,
        directory: Directory,
        slack: AsyncWebClient,
        password_pages: PasswordLinks | None,
        keypair_login: bool,
    ) -> None:
        """`keypair_login`: the bot knows its IAM user id, which the change-OS API needs for a key pair."""
        self.planner = planner
        self.policy = policy
        self.workflow = workflow
        self.store = store
        self.presenter = presenter
        self.notifier = notifier
        self.directory = directory
        self.slack = slack
        self.password_pages = password_pages
        self.keypair_login = keypair_login
        self.replies = Replies(notifier)
        self.fleet: FleetOpener | None = None  # `/changeos fleet …` (listeners/fleet.py), wired by the app
        self._drafts: dict[str, _Draft] = {}
        # A form's command, to answer through its response_url: by draft until submitted, then by request id.
        self._reply_to: OrderedDict[str, ReplyTo] = OrderedDict()
        self._watch = PasswordWatch(self._password_deadline)
        workflow.revoke_hooks.append(self.draft_revoked)

    def _keep_reply(self, key: str, to: ReplyTo) -> None:
        self._reply_to[key] = to
        while len(self._reply_to) > 10_000:  # commands whose forms were abandoned; the oldest go first
            self._reply_to.popitem(last=False)

    async def tell(self, channel: str, user: str, text: str) -> None:
        """A private word to someone outside a command's follow-ups (a click): chat.postEphemeral."""
        await self.replies.send(ReplyTo(channel, user), text)

    async def _answer(self, key: str, channel: str, user: str, text: str) -> None:
        """A follow-up to the command behind `key` (a draft or a request id): its response_url while it lasts."""
        await self.replies.send(self._reply_to.get(key) or ReplyTo(channel, user), text)

    def _remember(self, view_id: str, meta: dict[str, Any], user: str, chosen: ModalInput | None = None) -> None:
        if len(self._drafts) > 10_000:  # modals people abandoned; the oldest go first
            for key in list(self._drafts)[:1000]:
                del self._drafts[key]
        self._drafts[meta["d"]] = _Draft(view_id, dict(meta), user, chosen or ModalInput())

    async def password_set(self, draft_id: str) -> None:
        """The secure page set a password or used its link up: show it, with a fresh link. Never after the form was
        submitted or closed."""
        draft = self._drafts.get(draft_id)
        if draft is None or not draft.meta.get("s") or self.workflow.draft_ended(draft_id) is not None:
            return
        view = await self._plan(draft.meta, draft.user, draft.chosen)
        if self.workflow.draft_ended(draft_id) is not None:  # submitted while the plan was being built
            return
        try:
            await self.slack.views_update(view_id=draft.view_id, view=view)
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.info("views.update skipped: %s", error)
            if self._watch.slack_says_gone(error):
                self._drafts.pop(draft_id, None)
                self._watch.forget(draft_id)

    async def _password_deadline(self, draft_id: str) -> None:
        """The link or the stored password ran out: an expired password goes with every link of the draft, and
        the form is rebuilt to say so and offer a fresh link."""
        wf = self.workflow
        deadline = self._watch.password_deadline.get(draft_id)
        if deadline is not None and await wf.draft_password_info(draft_id) is None and wf.draft_ended(draft_id) is None:
            await wf.expire_draft_password(draft_id)
            minutes = f"{wf.draft_password_ttl.total_seconds() / 60:g}"
            self._watch.notices[draft_id] = (
                f"The password you set expired at {views.slack_date(deadline, '{time}')} and was deleted (a password "
                f"set on the page is kept {minutes} minutes until the form is submitted). Set it again with the "
                "button here, then submit."
            )
            self._watch.password_deadline.pop(draft_id, None)
            self._watch.expired[draft_id] = deadline
        await self.password_set(draft_id)

    def draft_revoked(self, draft_id: str, _digests: list[str], why: Any) -> None:
        if getattr(why, "final", False):  # submitted or closed: this form is never refreshed again
            self._drafts.pop(draft_id, None)
            self._watch.forget(draft_id)

    async def password_closed(self, body: dict[str, Any]) -> None:
        """view_closed: the person cancelled the form, so every link and password kept for it dies now."""
        meta = read_metadata(body.get("view") or {})
        user = (body.get("user") or {}).get("id", "")
        if not meta.get("d") or meta.get("u") != user:
            return
        await self.workflow.close_draft(
            meta["d"],
            DraftEnd(
                "This form was closed in Slack, so its password link no longer works and nothing set here could "
                "reach a request. Run /changeos again to start over.",
                final=True,
            ),
        )

    # ------------------------------------------------------------------ the command

    async def command(self, ack: AsyncAck, body: dict[str, Any]) -> ChangeRequest | _Form | None:
        """The answer within Slack's 3 s, and what follows it: `FORM` (a change, a rollback, a fleet, the backups'
        list, all after the ack: `open`), the request a cancel moved (to tell), or nothing."""
        user = body.get("user_id", "")
        parsed = parse_text(body.get("text") or "")
        match parsed:
            case UsageError():
                await ack(text=views.escape(f"{parsed.message}\n{parsed.usage}"), response_type="ephemeral")
            case HelpCommand():
                groups = await self._groups(user)
                await ack(text=texts.help_text(self.policy, user, groups), response_type="ephemeral")
            case ListCommand():
                await ack(text=views.list_text(await self.store.live()), response_type="ephemeral")
            case StatusCommand():
                await ack(text=await texts.status_text(self.store, parsed.target), response_type="ephemeral")
            case HistoryCommand():
                await ack(**await self._history(parsed, user), response_type="ephemeral")
            case CancelCommand():
                outcome = await self.workflow.cancel(parsed.request_id, user)
                if outcome.refused:
                    await ack(text=f"⛔ {views.escape(outcome.refused)}", response_type="ephemeral")
                    return None
                await ack(text=f"🗑️ {parsed.request_id} is cancelled.", response_type="ephemeral")
                return outcome.request
            case ChangeCommand() | RollbackCommand() | BackupsCommand() | FleetCommand():
                await ack()
                return FORM
        return None

    async def _history(self, cmd: HistoryCommand, user: str) -> dict[str, Any]:
        since = since_moment(cmd.since, datetime.now(UTC)) if cmd.since is not None else None
        found = await self.store.history(
            server=cmd.server, requester=user if cmd.mine else None, since=since, limit=history_view.SHOWN
        )
        when = views.slack_date(since) if since else None
        return history_view.history_answer(found, scope=history_view.scope_words(cmd.server, cmd.mine, when))

    async def _groups(self, user: str) -> set[str]:
        try:
            async with asyncio.timeout(1.5):  # not wait_for: no task per call (the type-ahead asks on every key)
                return await self.directory.groups_of(user)
        except TimeoutError:
            return set()

    async def open(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        """After the ack of a change command: the form, first with "looking up…", then with the plan."""
        cmd = parse_text(body.get("text") or "")
        user = body.get("user_id", "")
        channel = body.get("channel_id", "")
        reply = ReplyTo.of_command(body)
        if isinstance(cmd, FleetCommand):
            if self.fleet is not None:
                await self.fleet.open(body, client, cmd)
            return
        if isinstance(cmd, RollbackCommand):
            await self.open_rollback(
                client, user=user, channel=channel, trigger=body.get("trigger_id", ""), request_id=cmd.request_id
            )
            return
        if isinstance(cmd, BackupsCommand):
            await self.replies.send(reply, await self._backups_text(user, cmd.server))
            return
        if not isinstance(cmd, ChangeCommand):
            return  # answered in the ack
        # Deny before looking anything up: someone the policy does not name learns nothing about the account.
        groups = await self._groups(user)
        if not self.policy.can_request_anything(user, groups):
            await self.replies.send(reply, texts.NOT_IN_POLICY)
            return
        meta: dict[str, Any] = {"d": secrets.token_urlsafe(12), "c": channel, "u": user, "n": 0}
        self._keep_reply(meta["d"], reply)
        if cmd.notify:
            meta["nc"] = cmd.notify[:20]
        typed = _typed_meta(cmd)
        if typed:
            meta["t"] = typed
        try:
            opened = await client.views_open(trigger_id=body["trigger_id"], view=views.loading_modal(meta, cmd.server))
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))
            await self.replies.send(
                reply, "I could not open the form (Slack said the trigger expired). Run the command again."
            )
            return
        view = opened["view"]
        try:
            new_view = await self._first_plan(meta, user, groups, cmd, body.get("text") or "")
        except CloudError as exc:
            new_view = views.message_modal(meta, "Cloud unavailable", texts.cloud_trouble(exc))
        self._remember(view["id"], meta, user)
        await self._update(client, view["id"], view.get("hash"), new_view)

    # ------------------------------------------------------------------ rollback and backups

    async def rollback_clicked(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        """**Roll back to <image>** on a final message: the same as `/changeos rollback CR-…`."""
        user, request_id, channel = _click(body)
        await self.open_rollback(
            client, user=user, channel=channel, trigger=body.get("trigger_id", ""), request_id=request_id
        )

    async def open_rollback(
        self, client: AsyncWebClient, *, user: str, channel: str, trigger: str, request_id: str
    ) -> None:
        """The plan modal for a new request back to `request_id`'s backup: image and reason pre-filled, the login
        asked again (no password is ever kept for this), then the same checks and approval as any change."""
        groups = await self._groups(user)
        if not self.policy.can_request_anything(user, groups):
            await self.tell(channel, user, texts.NOT_IN_POLICY)
            return
        original = await self.store.get(request_id)
        refusal = rollback_refusal(original, request_id)
        if refusal is not None or original is None or original.backup_image_id is None:
            await self.tell(channel, user, f"⛔ {views.escape(refusal or 'No backup.')}")
            return
        meta: dict[str, Any] = {
            "d": secrets.token_urlsafe(12),
            "c": channel,
            "u": user,
            "n": 0,
            "s": original.server_id,
            "rb": original.id,
            "t": {"i": original.backup_image_id},
        }
        try:
            opened = await client.views_open(trigger_id=trigger, view=views.loading_modal(meta, original.server_name))
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))
            await self.tell(channel, user, "I could not open the form (Slack said the trigger expired). Try again.")
            return
        view = opened["view"]
        cmd = ChangeCommand(image=original.backup_image_id, reason=f"rollback of {original.id}")
        try:
            new_view = await self._plan(meta, user, ModalInput(), cmd)
        except CloudError as exc:
            new_view = views.message_modal(meta, "Cloud unavailable", texts.cloud_trouble(exc))
        self._remember(view["id"], meta, user)
        await self._update(client, view["id"], view.get("hash"), new_view)

    async def _rollback_of(self, meta: dict[str, Any], image_id: str | None) -> str | None:
        """The request this form rolls back: only while it still targets that request's backup on that server."""
        wanted = meta.get("rb")
        if not isinstance(wanted, str) or not image_id:
            return None
        original = await self.store.get(wanted)
        if original is None or original.server_id != meta.get("s") or original.backup_image_id != image_id:
            return None
        return original.id

    async def _backups_text(self, user: str, server_ref: str) -> str:
        """The bot's backups of a server the person may change, newest first, with age and size."""
        groups = await self._groups(user)
        if not self.policy.can_request_anything(user, groups):
            return texts.NOT_IN_POLICY
        planner = self.planner
        try:
            lookup = await planner.lookup(server_ref, lambda s: planner.may_request(user, groups, s).allowed)
            allowed = [s for s in lookup.matches if planner.may_request(user, groups, s).allowed]
            if len(allowed) != 1:
                return texts.backups_server_unknown(server_ref, len(allowed), lookup.suggestions)
            images = await planner.backups_of(allowed[0].id)
        except CloudError as exc:
            return texts.cloud_trouble(exc)
        return texts.backups_list(allowed[0].name, images, datetime.now(UTC))

    async def _first_plan(
        self, meta: dict[str, Any], user: str, groups: set[str], cmd: ChangeCommand, typed_text: str
    ) -> dict:
        """The first view on the already-open modal; every answer, "not found" included, is shown there."""
        planner = self.planner

        def may_change(server: Server) -> bool:
            return planner.may_request(user, groups, server).allowed

        if not cmd.server:
            servers = await planner.servers_for(may_change)
            if not servers:
                return views.message_modal(meta, "No server for you", texts.no_server_for_you())
            _set_candidates(meta, servers)
            return self._plan_without_server(meta, cmd)
        lookup = await planner.lookup(cmd.server, may_change)
        if not lookup.matches:
            text = texts.server_not_found(cmd.server, lookup.suggestions, typed_text)
            return views.message_modal(meta, "Server not found", text)
        allowed = [server for server in lookup.matches if may_change(server)]
        if len(allowed) > 1:
            meta["q"] = cmd.server
            _set_candidates(meta, allowed)
            return self._plan_without_server(meta, cmd)
        meta["s"] = (allowed or lookup.matches)[0].id  # none allowed: the plan says why
        return await self._plan(meta, user, ModalInput(), cmd)

    def _plan_without_server(self, meta: dict[str, Any], cmd: ChangeCommand) -> dict:
        """The chooser, carrying what was typed: reason and ticket in the inputs, the rest in the metadata."""
        return views.plan_modal(
            views.ModalPlan(
                metadata=meta,
                server=None,
                candidates=[tuple(c) for c in meta.get("k", [])],
                chooser_label=_chooser_label(meta),
                reason=cmd.reason,
                ticket=cmd.ticket,
                notify=meta.get("nc") or [],
                notify_unknown=_typed_command(meta).notify_names,
            )
        )

    async def _plan(
        self, meta: dict[str, Any], user: str, chosen: ModalInput, cmd: ChangeCommand | None = None
    ) -> dict:
        """The plan card for the server in `meta`: what was chosen in the modal wins, then what the command said
        (kept in the metadata, so it survives the chooser and every rebuild), then defaults."""
        cmd = cmd or _typed_command(meta)
        facts = await self.planner.facts(meta["s"])
        decision = self.planner.may_request(user, await self._groups(user), facts.server)
        if not decision.allowed:
            return views.message_modal(meta, "Not allowed", f"⛔ {views.escape(decision.reason)}")
        image_id, resolution = chosen.image_id, None
        if image_id is None and cmd.image:
            resolution = await self.planner.resolve_image(facts, decision.rule, cmd.image)
            if resolution.image is not None:
                image_id = resolution.image.id
                facts = facts.with_selected(resolution.image)
            else:
                await self._say_image_once(meta, user, resolution)
        elif image_id is not None and facts.image(image_id) is None:  # outside the catalogue: named by the command
            facts = await self.planner.facts(meta["s"], image_id=image_id)
        target = facts.image(image_id)
        inputs = default_inputs(
            replace(_inputs(chosen), image_id=image_id, image_query=resolution),
            typed=_typed_inputs(cmd, meta),
            server=facts.server,
            image=target,
            keypairs=facts.keypair_names,
        )
        assert inputs.login is not None  # the defaults always choose one
        password = await self._password_entry(meta, user, inputs.login, target.os_type if target else None)
        inputs = replace(
            inputs,
            password=PasswordInput(
                is_set=password.is_set, unavailable=password.why_unavailable if password.mode == "unavailable" else None
            ),
        )
        mode = self.policy.backup_mode(decision.rule)
        quota = await self.planner.image_quota() if mode != "off" else None
        inputs = replace(inputs, rollback_of=await self._rollback_of(meta, image_id))
        plan = evaluate_plan(
            inputs, facts.server_facts, target, facts.keypair_names, self._plan_policy(decision.rule), quota=quota
        )
        return views.plan_modal(
            views.ModalPlan(
                metadata=meta,
                server=_server_info(facts),
                candidates=[tuple(c) for c in meta.get("k", [])],
                chooser_label=_chooser_label(meta),
                images=[_choice(target)] if target else [],
                image_id=image_id,
                keypairs=facts.keypair_names,
                login=inputs.login,
                keyname=inputs.keyname,
                password=password,
                stop_type=(inputs.stop_type or StopType.SOFT).value,
                reason=inputs.reason,
                ticket=inputs.ticket,
                notify=list(inputs.notify),
                notify_unknown=cmd.notify_names,
                checks=plan.checks,
                backup_mode=mode,
                backup_on=plan.backup,
                rollback_of=inputs.rollback_of,
            )
        )

    def _plan_policy(self, rule: Any) -> PlanPolicy:
        return PlanPolicy(self.policy, rule, keypair_login=self.keypair_login)

    async def _say_image_once(self, meta: dict[str, Any], user: str, found: Resolution) -> None:
        """What an image argument matched (or the closest names), once per form: the form itself only says what to
        do, so nobody reads the same list twice; the message stays in the channel after the form is gone."""
        text = image_reply(found)
        if text is None or meta.get("ie"):
            return
        meta["ie"] = 1  # travels in private_metadata: a rebuild of the form does not say it again
        await self._answer(str(meta.get("d") or ""), meta.get("c") or user, user, views.escape(text))

    async def image_options(self, body: dict[str, Any]) -> dict[str, Any]:
        """The image type-ahead (block_suggestion): only for the form's owner, and only if the policy names them
        for this server; the catalogue comes from the region's cache, so a key costs no IMS call."""
        try:
            async with asyncio.timeout(OPTIONS_SECONDS):
                return await self._image_options(body)
        except TimeoutError:
            return views.image_options_notice("The image list is still loading: type again in a moment")
        except CloudError:
            return views.image_options_notice("The cloud did not answer: type again in a moment")

    async def _image_options(self, body: dict[str, Any]) -> dict[str, Any]:
        view = body.get("view") or {}
        meta = read_metadata(view)
        user = (body.get("user") or {}).get("id", "")
        if not user or meta.get("u") != user:
            return {"options": []}
        groups = await self._groups(user)
        if not self.policy.can_request_anything(user, groups):
            return {"options": []}
        server_id = read_input(view).server_id or meta.get("s")
        if not isinstance(server_id, str) or not server_id:
            return views.image_options_notice("Choose the server first")
        planner = self.planner
        facts = await planner.facts(server_id)
        decision = planner.may_request(user, groups, facts.server)
        if not decision.allowed:
            return {"options": []}
        index = planner.image_index(facts, decision.rule)
        if not len(index):
            return views.image_options_notice("No image the policy allows fits this server")
        options = index.rendered("slack-option", lambda image: views.image_option(_choice(image)))
        return views.image_options(
            [(label, [options[n] for n in rows]) for label, rows in index.grouped_rows(body.get("value"))]
        )

    async def _password_entry(
        self, meta: dict[str, Any], user: str, login: LoginMethod, os_type: str | None
    ) -> views.PasswordEntry:
        if login is not LoginMethod.PASSWORD:
            return views.PasswordEntry(mode="unavailable")
        if not self.workflow.passwords_enabled:
            return views.PasswordEntry(
                mode="unavailable",
                why_unavailable=(
                    "Password logins are off: the bot has no ECSBOT_SECRET_KEY to keep a password encrypted. "
                    "Use a key pair, or ask the bot's admin to set ECSBOT_SECRET_KEY."
                ),
            )
        pages = self.password_pages
        if pages is not None:
            draft_id = meta["d"]
            try:
                link = await pages.issue(draft_id=draft_id, user_id=user, os_type=os_type or "Linux")
            except DraftClosed:
                closed = "This form was already submitted or closed: run /changeos again."
                return views.PasswordEntry(mode="unavailable", why_unavailable=closed)
            except (PermissionError, ValueError):
                return views.PasswordEntry(mode="unavailable", why_unavailable="This form belongs to someone else.")
            kept = await self.workflow.draft_password_info(draft_id)
            wake = link.expires_at
            if kept is not None:
                self._watch.password_deadline[draft_id] = kept.expires_at
                self._watch.expired.pop(draft_id, None)
                wake = min(wake, kept.expires_at)
            self._watch.watch(draft_id, wake)
            verified = kept is not None and kept.set_via == "slack-signin"
            return views.PasswordEntry(
                mode="link",
                link=link.url,
                link_expires_at=link.expires_at,
                signin=pages.signin is not None,
                is_set=kept is not None,
                set_at=kept.set_at if kept else None,
                set_by_you=verified and kept is not None and kept.set_by == user,
                set_verified=verified,
                password_expires_at=kept.expires_at if kept else None,
                notice=self._watch.notices.pop(draft_id, None) if kept is None else None,
            )
        if self.policy.allow_password_in_modal:
            return views.PasswordEntry(mode="inline", nonce=str(meta.get("n", 0)))
        return views.PasswordEntry(
            mode="unavailable",
            why_unavailable=(
                "Password logins need the secure password page (set ECSBOT_PUBLIC_URL), and the policy does not "
                "allow typing a password into Slack. Use a key pair."
            ),
        )

    async def _update(self, client: AsyncWebClient, view_id: str, view_hash: str | None, view: dict) -> None:
        try:
            await client.views_update(view_id=view_id, hash=view_hash, view=view)
        except SlackApiError as exc:
            # hash_conflict: the person changed something meanwhile; their newer action rebuilds the view.
            log.info("views.update skipped: %s", exc.response.get("error"))

    # ------------------------------------------------------------------ changes inside the modal

    async def refresh(self, body: dict[str, Any], client: AsyncWebClient) -> None:
        view = body.get("view") or {}
        meta = read_metadata(view)
        user = (body.get("user") or {}).get("id", "")
        chosen = read_input(view)
        if chosen.server_id and chosen.server_id != meta.get("s"):
            meta["s"] = chosen.server_id
        if not meta.get("s") or meta.get("u") != user:
            return  # only the form's owner changes it
        if not self.policy.can_request_anything(user, await self._groups(user)):
            return  # deny before looking up, as the command does
        if meta.get("d"):
            self._remember(view["id"], meta, user, chosen)
        try:
            new_view = await self._plan(meta, user, chosen)
        except CloudError as exc:
            new_view = views.message_modal(meta, "Cloud unavailable", texts.cloud_trouble(exc))
        await self._update(client, view["id"], view.get("hash"), new_view)

    # ------------------------------------------------------------------ submit

    async def submit(self, ack: AsyncAck, body: dict[str, Any]) -> ChangeRequest | None:
        """Validated again on the server (fresh facts, the same plan the card showed); each ⛔ under its input. The
        stored request, to be announced after the ack; None when the form was refused."""
        view = body.get("view") or {}
        meta = read_metadata(view)
        user = (body.get("user") or {}).get("id", "")
        chosen = read_input(view)

        async def refuse(errors: dict[Field, str]) -> None:
            await ack(response_action="errors", errors=views.field_errors(errors, view))

        if chosen.server_id:
            meta["s"] = chosen.server_id
        if not meta.get("s") or meta.get("u") != user:
            await refuse({Field.FORM: "Choose a server first."})
            return None
        inputs = _inputs(chosen)
        missing = missing_inputs(inputs)
        if missing:
            await refuse(missing)
            return None
        groups = await self._groups(user)
        if not self.policy.can_request_anything(user, groups):  # before any cloud call: outsiders learn nothing
            await refuse({Field.FORM: texts.NOT_IN_POLICY[:300]})
            return None
        password_login = inputs.login is LoginMethod.PASSWORD
        if password_login and not self.workflow.passwords_enabled:
            await refuse({Field.LOGIN: "Password logins are off: use a key pair."})
            return None
        try:
            facts = await self._submit_facts(meta["s"], chosen.image_id)
        except (TimeoutError, CloudError) as exc:
            await refuse({Field.IMAGE: texts.short_cloud_trouble(exc)})
            return None
        decision = self.planner.may_request(user, groups, facts.server)
        if not decision.allowed:
            await refuse({Field.IMAGE: decision.reason[:300]})
            return None
        typed = chosen.password if password_login and chosen.password_block else None
        kept = await self.workflow.draft_password(meta["d"]) if password_login and typed is None else None
        password = PasswordInput(
            is_set=typed is not None or kept is not None, typed=typed, confirm=chosen.password_confirm, kept=kept
        )
        target = facts.image(chosen.image_id)
        backup = self.policy.backup_mode(decision.rule) != "off"
        plan = evaluate_plan(
            replace(inputs, password=password, rollback_of=await self._rollback_of(meta, chosen.image_id)),
            facts.server_facts,
            target,
            facts.keypair_names,
            self._plan_policy(decision.rule),
            quota=await self.planner.image_quota(fresh=True) if backup else None,
        )
        if plan.password_problem:
            meta["n"] = int(meta.get("n", 0)) + 1  # a new block_id clears both password inputs
            await ack(response_action="update", view=await self._with_banner(meta, user, chosen, plan.password_problem))
            return None
        if password_login and not password.is_set and self.password_pages is not None:
            # Link mode: there is nothing to type below, so lead to the page.
            why = await self._why_no_password(meta["d"])
            text = f"{why}Use *Set password securely* below to set it on the bot's page, then submit again."
            await ack(response_action="update", view=await self._with_banner(meta, user, chosen, text))
            return None
        if plan.blocking:
            await refuse(plan.errors)
            return None
        try:
            request = build_change_request(
                plan, requester=user, origin_channel=meta.get("c") or user, now=datetime.now(UTC)
            )
        except ValidationError as exc:
            await refuse({Field.REASON: texts.validation_message(exc)})
            return None
        try:
            stored = await self.workflow.submit(
                request, password=typed, draft_id=meta["d"], self_service=plan.self_service
            )
        except ServerBusyError as exc:
            live = await self.store.get(exc.live_request_id)
            await refuse({Field.IMAGE: texts.server_busy(request.server_name, live)})
            return None
        except ValueError as exc:
            await refuse({Field.LOGIN: str(exc)[:300]})
            return None
        reply = self._reply_to.pop(meta["d"], None)
        if reply is not None:
            self._keep_reply(stored.id, reply)  # `announce` answers the command with the request
        await ack()
        return stored

    async def _submit_facts(self, server_id: str, image_id: str | None) -> CloudFacts:
        """Fresh facts (the image's status as it is now), else the plan-time ones if the cloud is slow."""
        try:
            return await asyncio.wait_for(
                self.planner.facts(server_id, fresh=True, image_id=image_id), SUBMIT_RECHECK_SECONDS
            )
        except (TimeoutError, CloudError):
            return await asyncio.wait_for(self.planner.facts(server_id), 0.5)

    async def _why_no_password(self, draft_id: str) -> str:
        expired = self._watch.password_deadline.pop(draft_id, None)
        if expired is not None:  # before the timer did it: its links go with it
            await self.workflow.expire_draft_password(draft_id)
            self._watch.expired[draft_id] = expired
        expired = expired or self._watch.expired.get(draft_id)
        if expired is None:
            return "No admin password is set yet. "
        return f"The password you set expired at {views.slack_date(expired, '{time}')} and was deleted. "

    async def _with_banner(self, meta: dict[str, Any], user: str, chosen: ModalInput, text: str) -> dict:
        view = await self._plan(meta, user, chosen)
        view["blocks"].insert(0, {"type": "section", "text": {"type": "mrkdwn", "text": f"⛔ {text}"}})
        return view

    async def announce(self, stored: ChangeRequest) -> None:
        """After the form closed: the approval card, a word to the requester, the request's own messages."""
        user = stored.requester
        self_service = stored.state.value == "approved"  # the workflow approved it and woke the tracker
        stored = await self.presenter.post_approval_card(stored)  # by now the tracker may have moved it on
        if stored.approval_ts is None:
            text = texts.card_not_posted(stored)
        elif self_service:
            text = f"▶️ {stored.id} starts now (self-service)."
        else:
            text = f"📨 {stored.id} is waiting for approval in <#{stored.approvals_channel}>."
        await self._answer(stored.id, stored.origin_channel, user, text)
        self._reply_to.pop(stored.id, None)
        await self.presenter.sync(stored.id, stored)
        if stored.rollback_of:
            await self.presenter.link_rollback(stored)


def _click(body: dict[str, Any]) -> tuple[str, str, str]:
    """Who clicked a message button, its value, and where."""
    user = (body.get("user") or {}).get("id", "")
    action = (body.get("actions") or [{}])[0]
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
    return user, str(action.get("value") or ""), channel


def _inputs(chosen: ModalInput) -> PlanInputs:
    """The form's inputs as the plan reads them."""
    return PlanInputs(
        image_id=chosen.image_id,
        login=chosen.login,
        keyname=chosen.keyname,
        stop_type=chosen.stop_type,
        reason=chosen.reason,
        ticket=chosen.ticket,
        notify=tuple(chosen.notify),
        backup=chosen.backup,
    )


def _typed_inputs(cmd: ChangeCommand, meta: dict[str, Any]) -> PlanInputs:
    """What the command said, for what the form does not hold yet."""
    login = LoginMethod.PASSWORD if cmd.password else (LoginMethod.KEYPAIR if cmd.keyname else None)
    return PlanInputs(
        login=login,
        keyname=cmd.keyname,
        stop_type=StopType(cmd.stop.value) if cmd.stop else None,
        reason=cmd.reason,
        ticket=cmd.ticket,
        notify=tuple(meta.get("nc") or ()),
    )


def _typed_meta(cmd: ChangeCommand) -> dict[str, Any]:
    """What the command said that no modal input carries yet, in a few bytes of private_metadata."""
    typed: dict[str, Any] = {}
    if cmd.image:
        typed["i"] = cmd.image
    if cmd.keyname:
        typed["k"] = cmd.keyname
    if cmd.password:
        typed["p"] = 1
    if cmd.stop:
        typed["st"] = cmd.stop.value
    if cmd.notify_names:
        typed["nn"] = _within(cmd.notify_names, 400)
    return typed


def _typed_command(meta: dict[str, Any]) -> ChangeCommand:
    """The typed values back from `_typed_meta`; metadata comes from Slack, so anything odd reads as not typed."""
    typed = meta.get("t")
    typed = typed if isinstance(typed, dict) else {}

    def text(key: str) -> str | None:
        value = typed.get(key)
        return value if isinstance(value, str) and value else None

    stop = text("st")
    names = typed.get("nn")
    return ChangeCommand(
        image=text("i"),
        keyname=text("k"),
        password=typed.get("p") == 1,
        stop=StopType(stop) if isinstance(stop, str) and stop in StopType.__members__ else None,
        notify_names=[n for n in names if isinstance(n, str)] if isinstance(names, list) else [],
    )


def _within(names: list[str], budget: int) -> list[str]:
    kept: list[str] = []
    for name in names:
        budget -= len(name) + 4
        if budget < 0:
            break
        kept.append(name)
    return kept


def _chooser_label(meta: dict[str, Any]) -> str:
    query = meta.get("q")
    if isinstance(query, str) and query:
        label = f"Several servers you may change are named {query}: choose one"
    else:
        label = "No server was named: choose the server"
    shown, total = len(meta.get("k") or []), meta.get("m")
    if isinstance(total, int) and total > shown:
        label += f" (the first {shown} of {total}; run /changeos with a name to narrow)"
    return label


# Slack refuses a view whose private_metadata exceeds 3,000 characters; the rest of the metadata is a few hundred.
METADATA_BUDGET = 2900


def _set_candidates(meta: dict[str, Any], servers: list[Server]) -> None:
    """[id, label] pairs for the server chooser, as many as fit in private_metadata (they travel there)."""
    meta["k"] = []
    size = len(json.dumps(meta, separators=(",", ":")))
    for server in servers[:100]:
        pair = [server.id, f"{server.name} · {server.status} · {server.id[:8]}"]
        size += len(json.dumps(pair, separators=(",", ":"))) + 1
        if size > METADATA_BUDGET:
            meta["m"] = len(servers)
            break
        meta["k"].append(pair)
    if len(servers) > 100:
        meta["m"] = len(servers)


def _choice(image: Image) -> views.ImageChoice:
    return views.ImageChoice(image.id, image.name, image.os_type or "Other")


def _server_info(facts: CloudFacts) -> views.ServerInfo:
    s = facts.server
    flavor = s.flavor.name or s.flavor.id or "?" if s.flavor else "?"
    return views.ServerInfo(
        id=s.id,
        name=s.name,
        status=s.status,
        flavor=flavor,
        image_id=s.image_id,
        image_name=s.image_name,
        os_type=s.os_type,
        system_disk_gb=facts.system_disk_gb,
    )
