"""`/changeos` and its plan-card modal: open fast, look the cloud up, show the checks, validate again on submit."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.cloud import CloudError, Image, Server
from bot.domain.command import (
    CancelCommand,
    ChangeCommand,
    HelpCommand,
    ListCommand,
    StatusCommand,
    UsageError,
    parse_command,
)
from bot.domain.passwords import password_problems
from bot.domain.preflight import Check, CheckLevel
from bot.domain.request import ChangeRequest, LoginMethod, StopType
from bot.domain.tracking import MISSING_USER_ID
from bot.imagematch import Resolution
from bot.planner import CloudFacts, Selection, image_reply
from bot.slack import texts, views
from bot.slack.modal_state import ModalInput, read_input, read_metadata
from bot.slack.password_watch import PasswordWatch
from bot.store import ServerBusyError
from bot.workflow import DraftClosed, DraftEnd

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)

SUBMIT_RECHECK_SECONDS = 2.0  # the cloud gets this long to confirm the plan before the 3 s view_submission deadline
OPTIONS_SECONDS = 2.5  # the image type-ahead answers within Slack's 3 s, with what it has by then
# After the ack, the modal work waits this long: in a burst of commands every ack goes out first, instead of later
# acks queueing behind earlier commands' lookups on the one event loop. The trigger stays valid for 3 s.
AFTER_ACK_DEFER_SECONDS = 0.1


def register(app: AsyncApp, rt: Runtime) -> None:
    card = PlanCard(rt)
    if rt.password_pages is not None:
        rt.password_pages.on_set = card.password_set
        rt.password_pages.on_open = card.password_set  # the link is used up: the form shows a fresh one
    rt.workflow.revoke_hooks.append(card.draft_revoked)

    # First the command, then the type-ahead: Bolt tests listeners in order, building each one's arguments to test it
    # (~15 µs), and these two are answered while someone waits. The command's ack is the one Slack times.
    @app.command("/changeos")
    async def on_command(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        try:
            await card.command(ack, body, client)
        except Exception:
            log.exception("/changeos failed")
            if ack.response is None:
                await ack(text=texts.INTERNAL_ERROR, response_type="ephemeral")
            else:
                await rt.notifier.ephemeral(body.get("channel_id", ""), body.get("user_id", ""), texts.INTERNAL_ERROR)

    @app.options(views.IMAGE_ACTION)
    async def on_image_options(ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack(**await card.image_options(body))

    @app.view_closed(views.MODAL_CALLBACK)
    async def on_closed(ack: AsyncAck, body: dict[str, Any]) -> None:
        card.password_closed(body)  # quick and local: its links are dead before Slack hears back
        await ack()

    @app.action(views.IMAGE_ACTION)
    @app.action(views.LOGIN_ACTION)
    @app.action(views.KEY_ACTION)
    @app.action(views.SERVER_ACTION)
    async def on_modal_change(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        await card.refresh(body, client)

    @app.action(views.PASSWORD_LINK_ACTION)
    async def on_link_clicked(ack: AsyncAck) -> None:
        await ack()  # a URL button still sends an action; nothing to do
    @app.view(views.MODAL_CALLBACK)
    async def on_submit(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        try:
            await card.submit(ack, body, client)
        except Exception:
            log.exception("plan submission failed")  # the scrubber keeps state.values out of the log
            if ack.response is None:
                await ack(response_action="errors", errors={views.REASON_BLOCK: texts.INTERNAL_ERROR[:300]})


@dataclass
class _Draft:
    """What the bot remembers of an open modal, so the secure page can refresh it ("password set ✓")."""

    view_id: str
    meta: dict[str, Any]
    user: str
    chosen: ModalInput = field(default_factory=ModalInput)


class PlanCard:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._drafts: dict[str, _Draft] = {}
        self._watch = PasswordWatch(self._password_deadline)

    def _remember(self, view_id: str, meta: dict[str, Any], user: str, chosen: ModalInput | None = None) -> None:
        if len(self._drafts) > 10_000:  # modals people abandoned; the oldest go first
            for key in list(self._drafts)[:1000]:
                del self._drafts[key]
        self._drafts[meta["d"]] = _Draft(view_id, dict(meta), user, chosen or ModalInput())

    async def password_set(self, draft_id: str) -> None:
        """The secure page set a password or used its link up: show it, with a fresh link. Never after the form was
        submitted or closed."""
        draft = self._drafts.get(draft_id)
        if draft is None or not draft.meta.get("s") or self.rt.workflow.draft_ended(draft_id) is not None:
            return
        view = await self._plan(draft.meta, draft.user, draft.chosen)
        if self.rt.workflow.draft_ended(draft_id) is not None:  # submitted while the plan was being built
            return
        try:
            await self.rt.slack.views_update(view_id=draft.view_id, view=view)
        except SlackApiError as exc:
            error = exc.response.get("error")
            log.info("views.update skipped: %s", error)
            if self._watch.slack_says_gone(error):
                self._drafts.pop(draft_id, None)
                self._watch.forget(draft_id)

    async def _password_deadline(self, draft_id: str) -> None:
        """The link or the stored password ran out: an expired password goes with every link of the draft, and
        the form is rebuilt to say so and offer a fresh link."""
        wf = self.rt.workflow
        deadline = self._watch.password_deadline.get(draft_id)
        if deadline is not None and wf.draft_password_info(draft_id) is None and wf.draft_ended(draft_id) is None:
            wf.expire_draft_password(draft_id)
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

    def password_closed(self, body: dict[str, Any]) -> None:
        """view_closed: the person cancelled the form, so every link and password kept for it dies now."""
        meta = read_metadata(body.get("view") or {})
        user = (body.get("user") or {}).get("id", "")
        if not meta.get("d") or meta.get("u") != user:
            return
        self.rt.workflow.close_draft(
            meta["d"],
            DraftEnd(
                "This form was closed in Slack, so its password link no longer works and nothing set here could "
                "reach a request. Run /changeos again to start over.",
                final=True,
            ),
        )

    # ------------------------------------------------------------------ the command

    async def command(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        user = body.get("user_id", "")
        channel = body.get("channel_id", "")
        parsed = parse_command(body.get("text") or "")
        match parsed:
            case UsageError():
                await ack(text=views.escape(f"{parsed.message}\n{parsed.usage}"), response_type="ephemeral")
            case HelpCommand():
                groups = await self._groups(user)
                await ack(text=texts.help_text(self.rt.policy, user, groups), response_type="ephemeral")
            case ListCommand():
                await ack(text=views.list_text(self.rt.store.live()), response_type="ephemeral")
            case StatusCommand():
                await ack(text=texts.status_text(self.rt.store, parsed.target), response_type="ephemeral")
            case CancelCommand():
                outcome = self.rt.workflow.cancel(parsed.request_id, user)
                if outcome.refused:
                    await ack(text=f"⛔ {views.escape(outcome.refused)}", response_type="ephemeral")
                    return
                await ack(text=f"🗑️ {parsed.request_id} is cancelled.", response_type="ephemeral")
                await self.rt.presenter.sync(parsed.request_id, outcome.request)
            case ChangeCommand():
                await ack()
                await asyncio.sleep(AFTER_ACK_DEFER_SECONDS)
                await self._open(body, client, parsed, user, channel)

    async def _groups(self, user: str) -> set[str]:
        try:
            async with asyncio.timeout(1.5):  # not wait_for: no task per call (the type-ahead asks on every key)
                return await self.rt.directory.groups_of(user)
        except TimeoutError:
            return set()

    async def _open(
        self, body: dict[str, Any], client: AsyncWebClient, cmd: ChangeCommand, user: str, channel: str
    ) -> None:
        # Deny before looking anything up: someone the policy does not name learns nothing about the account.
        groups = await self._groups(user)
        if not self.rt.policy.can_request_anything(user, groups):
            await self.rt.notifier.ephemeral(channel, user, texts.NOT_IN_POLICY)
            return
        meta: dict[str, Any] = {"d": secrets.token_urlsafe(12), "c": channel, "u": user, "n": 0}
        if cmd.notify:
            meta["nc"] = cmd.notify[:20]
        typed = _typed_meta(cmd)
        if typed:
            meta["t"] = typed
        try:
            opened = await client.views_open(trigger_id=body["trigger_id"], view=views.loading_modal(meta, cmd.server))
        except SlackApiError as exc:
            log.warning("views.open failed: %s", exc.response.get("error"))
            await self.rt.notifier.ephemeral(
                channel, user, "I could not open the form (Slack said the trigger expired). Run the command again."
            )
            return
        view = opened["view"]
        try:
            new_view = await self._first_plan(meta, user, groups, cmd, body.get("text") or "")
        except CloudError as exc:
            new_view = views.message_modal(meta, "Cloud unavailable", texts.cloud_trouble(exc))
        self._remember(view["id"], meta, user)
        await self._update(client, view["id"], view.get("hash"), new_view)

    async def _first_plan(
        self, meta: dict[str, Any], user: str, groups: set[str], cmd: ChangeCommand, typed_text: str
    ) -> dict:
        """The first view on the already-open modal; every answer, "not found" included, is shown there."""
        planner = self.rt.planner

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
        self, meta: dict[str, Any], user: str, chosen: ModalInput, cmd: ChangeCommand | None = None, *, fresh=False
    ) -> dict:
        """The plan card for the server in `meta`: what was chosen in the modal wins, then what the command said
        (kept in the metadata, so it survives the chooser and every rebuild), then defaults."""
        cmd = cmd or _typed_command(meta)
        facts = await self.rt.planner.facts(meta["s"], fresh=fresh)
        server = facts.server
        decision = self.rt.planner.may_request(user, await self._groups(user), server)
        if not decision.allowed:
            return views.message_modal(meta, "Not allowed", f"⛔ {views.escape(decision.reason)}")
        rule = decision.rule
        image_id = chosen.image_id
        resolution = None
        if image_id is None and cmd.image:
            resolution = await self.rt.planner.resolve_image(facts, rule, cmd.image)
            if resolution.image is not None:
                image_id = resolution.image.id
                facts = facts.with_selected(resolution.image)
            else:
                await self._say_image_once(meta, user, resolution)
        elif image_id is not None and facts.image(image_id) is None:  # outside the catalogue: named by the command
            facts = await self.rt.planner.facts(meta["s"], image_id=image_id)
        target = facts.image(image_id)
        login = chosen.login
        if login is None:
            login = LoginMethod.PASSWORD if cmd.password else (LoginMethod.KEYPAIR if cmd.keyname else None)
        if login is None:
            login = LoginMethod.PASSWORD if target and target.os_type == "Windows" else LoginMethod.KEYPAIR
        keyname = chosen.keyname or cmd.keyname  # a typed key is never swapped; an unknown one is a ⛔ check
        if keyname is None and server.key_name in facts.keypair_names:
            keyname = server.key_name
        stop_type = chosen.stop_type or (StopType(cmd.stop.value) if cmd.stop else StopType.SOFT)
        password = self._password_entry(meta, user, login, target.os_type if target else None)
        selection = Selection(
            image_id=image_id,
            login=login,
            keyname=keyname if login is LoginMethod.KEYPAIR else None,
            password_set=password.is_set,
            stop_type=stop_type,
        )
        checks = self.rt.planner.checks(facts, rule, selection, resolution=resolution)
        if login is LoginMethod.PASSWORD and password.mode == "unavailable":
            checks = [*checks, Check(CheckLevel.BLOCK, "Password login unavailable", password.why_unavailable)]
        if login is LoginMethod.KEYPAIR and not self.rt.settings.huaweicloud_user_id:
            checks = [*checks, Check(CheckLevel.BLOCK, "Key pair login unavailable", MISSING_USER_ID)]
        notify = chosen.notify or meta.get("nc") or []
        return views.plan_modal(
            views.ModalPlan(
                metadata=meta,
                server=_server_info(facts),
                candidates=[tuple(c) for c in meta.get("k", [])],
                chooser_label=_chooser_label(meta),
                images=[_choice(target)] if target else [],
                image_id=image_id,
                keypairs=facts.keypair_names,
                login=login,
                keyname=keyname,
                password=password,
                stop_type=stop_type.value,
                reason=chosen.reason or cmd.reason,
                ticket=chosen.ticket or cmd.ticket,
                notify=notify,
                notify_unknown=cmd.notify_names,
                checks=checks,
            )
        )

    async def _say_image_once(self, meta: dict[str, Any], user: str, found: Resolution) -> None:
        """What an image argument matched (or the closest names), once per form: the form itself only says what to
        do, so nobody reads the same list twice; the message stays in the channel after the form is gone."""
        text = image_reply(found)
        if text is None or meta.get("ie"):
            return
        meta["ie"] = 1  # travels in private_metadata: a rebuild of the form does not say it again
        await self.rt.notifier.ephemeral(meta.get("c") or user, user, views.escape(text))

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
        if not self.rt.policy.can_request_anything(user, groups):
            return {"options": []}
        server_id = read_input(view).server_id or meta.get("s")
        if not isinstance(server_id, str) or not server_id:
            return views.image_options_notice("Choose the server first")
        planner = self.rt.planner
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

    def _password_entry(self, meta: dict[str, Any], user: str, login: LoginMethod, os_type: str | None):
        if login is not LoginMethod.PASSWORD:
            return views.PasswordEntry(mode="unavailable")
        rt = self.rt
        if not rt.workflow.passwords_enabled:
            return views.PasswordEntry(
                mode="unavailable",
                why_unavailable=(
                    "Password logins are off: the bot has no ECSBOT_SECRET_KEY to keep a password encrypted. "
                    "Use a key pair, or ask the bot's admin to set ECSBOT_SECRET_KEY."
                ),
            )
        if rt.password_pages is not None:
            draft_id = meta["d"]
            try:
                link = rt.password_pages.issue(draft_id=draft_id, user_id=user, os_type=os_type or "Linux")
            except DraftClosed:
                closed = "This form was already submitted or closed: run /changeos again."
                return views.PasswordEntry(mode="unavailable", why_unavailable=closed)
            except (PermissionError, ValueError):
                return views.PasswordEntry(mode="unavailable", why_unavailable="This form belongs to someone else.")
            kept = rt.workflow.draft_password_info(draft_id)
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
                signin=rt.password_pages.signin is not None,
                is_set=kept is not None,
                set_at=kept.set_at if kept else None,
                set_by_you=verified and kept is not None and kept.set_by == user,
                set_verified=verified,
                password_expires_at=kept.expires_at if kept else None,
                notice=self._watch.notices.pop(draft_id, None) if kept is None else None,
            )
        if rt.policy.allow_password_in_modal:
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
        if not self.rt.policy.can_request_anything(user, await self._groups(user)):
            return  # deny before looking up, as the command does
        if meta.get("d") and meta.get("u") == user:
            self._remember(view["id"], meta, user, chosen)
        try:
            new_view = await self._plan(meta, user, chosen)
        except CloudError as exc:
            new_view = views.message_modal(meta, "Cloud unavailable", texts.cloud_trouble(exc))
        await self._update(client, view["id"], view.get("hash"), new_view)

    # ------------------------------------------------------------------ submit

    async def submit(self, ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        view = body.get("view") or {}
        meta = read_metadata(view)
        user = (body.get("user") or {}).get("id", "")
        chosen = read_input(view)
        if chosen.server_id:
            meta["s"] = chosen.server_id
        if not meta.get("s") or meta.get("u") != user:
            await ack(response_action="errors", errors=_first_error(view, "Choose a server first."))
            return
        errors = _missing(chosen)
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        rt = self.rt
        groups = await self._groups(user)
        if not rt.policy.can_request_anything(user, groups):  # before any cloud call: outsiders learn nothing
            await ack(response_action="errors", errors=_first_error(view, texts.NOT_IN_POLICY[:300]))
            return
        if chosen.login is LoginMethod.PASSWORD and not rt.workflow.passwords_enabled:
            await ack(response_action="errors", errors={views.LOGIN_BLOCK: "Password logins are off: use a key pair."})
            return
        try:
            facts = await asyncio.wait_for(
                rt.planner.facts(meta["s"], fresh=True, image_id=chosen.image_id), SUBMIT_RECHECK_SECONDS
            )
        except (TimeoutError, CloudError):
            try:
                facts = await asyncio.wait_for(rt.planner.facts(meta["s"]), 0.5)  # the plan-time facts
            except (TimeoutError, CloudError) as exc:
                await ack(response_action="errors", errors={views.IMAGE_BLOCK: texts.short_cloud_trouble(exc)})
                return
        server = facts.server
        decision = rt.planner.may_request(user, groups, server)
        if not decision.allowed:
            await ack(response_action="errors", errors={views.IMAGE_BLOCK: decision.reason[:300]})
            return
        target = facts.image(chosen.image_id)
        inline_password = chosen.password if chosen.login is LoginMethod.PASSWORD and chosen.password_block else None
        if inline_password is not None:
            problem = _password_problem(chosen, (target.os_type if target else None) or "Linux")
            if problem:
                meta["n"] = int(meta.get("n", 0)) + 1  # a new block_id clears both password inputs
                new_view = await self._plan(meta, user, chosen)
                new_view["blocks"].insert(0, {"type": "section", "text": {"type": "mrkdwn", "text": f"⛔ {problem}"}})
                await ack(response_action="update", view=new_view)
                return
        if chosen.login is LoginMethod.PASSWORD and inline_password is None:
            kept = rt.workflow.draft_password(meta["d"])
            os_type = (target.os_type if target else None) or "Linux"
            if kept is None and rt.password_pages is not None:  # link mode: nothing to type below, so lead somewhere
                expired = self._watch.password_deadline.pop(meta["d"], None)
                if expired is not None:  # before the timer did it: its links go with it
                    rt.workflow.expire_draft_password(meta["d"])
                    self._watch.expired[meta["d"]] = expired
                expired = expired or self._watch.expired.get(meta["d"])
                why = (
                    f"The password you set expired at {views.slack_date(expired, '{time}')} and was deleted. "
                    if expired is not None
                    else "No admin password is set yet. "
                )
                new_view = await self._plan(meta, user, chosen)
                text = f"⛔ {why}Use *Set password securely* below to set it on the bot's page, then submit again."
                new_view["blocks"].insert(0, {"type": "section", "text": {"type": "mrkdwn", "text": text}})
                await ack(response_action="update", view=new_view)
                return
            if kept is not None and target and password_problems(kept.get_secret_value(), os_type=os_type):
                await ack(
                    response_action="errors",
                    errors={
                        views.LOGIN_BLOCK: "The password set on the secure page does not meet the rules of "
                        f"{target.name} ({target.os_type}). Set it again with the link."
                    },
                )
                return
        password_set = inline_password is not None or rt.workflow.draft_has_password(meta["d"])
        selection = Selection(
            image_id=chosen.image_id,
            login=chosen.login,
            keyname=chosen.keyname,
            password_set=password_set,
            stop_type=chosen.stop_type or StopType.SOFT,
        )
        checks = rt.planner.checks(facts, decision.rule, selection)
        if chosen.login is LoginMethod.KEYPAIR and not rt.settings.huaweicloud_user_id:
            checks.append(Check(CheckLevel.BLOCK, "Key pair login unavailable", MISSING_USER_ID))
        blocking = [c for c in checks if c.level is CheckLevel.BLOCK]
        if blocking:
            await ack(response_action="errors", errors=_errors_for(blocking, chosen))
            return
        rule = decision.rule
        now = datetime.now(UTC)
        try:
            request = ChangeRequest(
                requester=user,
                origin_channel=meta.get("c") or user,
                server_id=server.id,
                server_name=server.name,
                server_status=server.status,
                current_image_id=server.image_id,
                current_image_name=server.image_name,
                target_image_id=target.id,  # type: ignore[union-attr]
                target_image_name=target.name,  # type: ignore[union-attr]
                target_os_type=target.os_type or "Linux",  # type: ignore[union-attr]
                cloud_init=rt.planner.changeos_api(rule, target)[0] == "v2",  # type: ignore[arg-type]
                login=chosen.login or LoginMethod.KEYPAIR,  # never None here: _missing() refused that form
                keyname=chosen.keyname if chosen.login is LoginMethod.KEYPAIR else None,
                has_password=chosen.login is LoginMethod.PASSWORD,
                stop_first=server.status == "ACTIVE",
                stop_type=chosen.stop_type or StopType.SOFT,
                reason=chosen.reason or "",
                ticket=chosen.ticket,
                notify_channels=list(dict.fromkeys([*rt.policy.notify_channels_for(rule), *chosen.notify])),
                checklist=[check.encode() for check in checks],
                approvals_channel=rt.policy.approvals_channel_for(rule, meta.get("c") or user),
                approvals_required=max(1, rt.policy.approvals_needed(rule)),
                expires_at=now + rt.policy.expiry,
            )
        except ValidationError as exc:
            await ack(response_action="errors", errors={views.REASON_BLOCK: texts.validation_message(exc)})
            return
        try:
            stored = rt.workflow.submit(
                request,
                password=inline_password,
                draft_id=meta["d"],
                self_service=rt.policy.approvals_needed(rule) == 0,
            )
        except ServerBusyError as exc:
            live = rt.store.get(exc.live_request_id)
            await ack(response_action="errors", errors={views.IMAGE_BLOCK: texts.server_busy(server.name, live)})
            return
        except ValueError as exc:
            await ack(response_action="errors", errors={views.LOGIN_BLOCK: str(exc)[:300]})
            return
        await ack()
        stored = await rt.presenter.post_approval_card(stored)
        where = f"<#{stored.approvals_channel}>"
        if stored.approval_ts is None:
            await rt.notifier.ephemeral(stored.origin_channel, user, texts.card_not_posted(stored))
        elif stored.state.value == "approved":
            await rt.notifier.ephemeral(stored.origin_channel, user, f"▶️ {stored.id} starts now (self-service).")
            rt.tracker.wake()
        else:
            await rt.notifier.ephemeral(
                stored.origin_channel, user, f"📨 {stored.id} is waiting for approval in {where}."
            )
        await rt.presenter.sync(stored.id, stored)


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


def _first_error(view: dict[str, Any], message: str) -> dict[str, str]:
    for block in view.get("blocks") or []:
        if block.get("type") == "input":
            return {block["block_id"]: message}
    return {views.REASON_BLOCK: message}


def _missing(chosen: ModalInput) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not chosen.image_id:
        errors[views.IMAGE_BLOCK] = "Choose the target image."
    if chosen.login is None:
        errors[views.LOGIN_BLOCK] = "Choose how to log in after the change."
    elif chosen.login is LoginMethod.KEYPAIR and not chosen.keyname:
        errors[views.KEY_BLOCK] = "Choose a key pair."
    if not chosen.reason:
        errors[views.REASON_BLOCK] = "Say why: approvers and the audit trail need a reason."
    return errors


def _password_problem(chosen: ModalInput, os_type: str) -> str | None:
    if chosen.password is None:
        return "Type the admin password twice."
    value = chosen.password.get_secret_value()
    if chosen.password_confirm is None or chosen.password_confirm.get_secret_value() != value:
        return "The two passwords differ. Type them again."
    problems = password_problems(value, os_type=os_type)
    return " ".join(problems) if problems else None


def _errors_for(blocking, chosen: ModalInput) -> dict[str, str]:
    """Put each ⛔ under the input it is about, the rest under the image select."""
    errors: dict[str, list[str]] = {}
    for check in blocking:
        title = check.title.lower()
        if "key" in title and chosen.login is LoginMethod.KEYPAIR:
            block = views.KEY_BLOCK
        elif "password" in title or "login" in title:
            block = views.LOGIN_BLOCK
        else:
            block = views.IMAGE_BLOCK
        errors.setdefault(block, []).append(
            f"⛔ {check.title}: {check.detail}" if check.detail else f"⛔ {check.title}"
        )
    return {block: " ".join(msgs)[:1900] for block, msgs in errors.items()}
