"""A canary password through the whole flow: it reaches the cloud and appears nowhere else."""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.domain.request import RequestState
from bot.slack import views
from sandbox.devtools import slack_requests as sr
from sandbox.devtools.stack import APPROVER, REQUESTER, LocalStack, StackOptions
from tests.e2e.conftest import carded, modal_action, open_plan, wait_state

CANARY = "Canary-Pw-7391!x"


def password_blocks(view: dict) -> tuple[str, str]:
    ids = [b["block_id"] for b in view["blocks"] if b.get("type") == "input"]
    first = next(i for i in ids if i.startswith(views.PASSWORD_BLOCK_PREFIX + ":"))
    second = next(i for i in ids if i.startswith(views.PASSWORD_CONFIRM_PREFIX + ":"))
    return first, second


def database_bytes(stack: LocalStack) -> bytes:
    path = stack.rt.settings.db_path
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    wal = path.with_name(path.name + "-wal")
    return data + (wal.read_bytes() if wal.exists() else b"")


async def test_canary_password_reaches_the_cloud_and_nothing_else(stack: LocalStack, caplog, json_logs) -> None:
    caplog.set_level(logging.DEBUG)
    view = await open_plan(stack, "db-01 ubuntu-22.04 --reason canary run")
    view = await modal_action(stack, view, views.LOGIN_ACTION, "password")
    first, second = password_blocks(view)

    # A mismatch is refused, and the rebuilt view has new, empty password inputs.
    mismatch = await stack.submit(view, {first: sr.text_value(CANARY), second: sr.text_value(CANARY + "x")})
    answer = mismatch.json()
    assert answer["response_action"] == "update"
    assert "differ" in str(answer["view"]["blocks"])
    assert CANARY not in mismatch.text
    new_first, new_second = password_blocks(answer["view"])
    assert (new_first, new_second) != (first, second), "new block ids clear what was typed"

    stored_view = dict(view, blocks=answer["view"]["blocks"])
    ok = await stack.submit(stored_view, {new_first: sr.text_value(CANARY), new_second: sr.text_value(CANARY)})
    assert ok.status_code == 200 and ok.text == "", ok.text
    request = await stack.slack.wait_until(
        lambda: carded(stack), what="the approval card"
    )
    assert request.has_password
    card = stack.slack.message(request.approvals_channel, request.approval_ts)
    assert "set ✓" in str(card.blocks)

    await stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
    final = await wait_state(stack, request.id, RequestState.SUCCEEDED, RequestState.FAILED)
    assert final.state is RequestState.SUCCEEDED, final.result

    # It reached the cloud: the simulator accepted exactly this password for the server.
    server = stack.sim.state.servers[final.server_id]
    assert server.login_password_sha256 == hashlib.sha256(CANARY.encode()).hexdigest()

    # And nowhere else: not in logs, not in the database after the change, not in Slack traffic (except the
    # modal's own two submissions, which Slack sends to the bot, not the other way round), not in any reprs.
    assert CANARY not in caplog.text
    assert json_logs.entries() and CANARY not in json_logs.text, "the JSON log format, too"
    assert await stack.rt.workflow.password_for(final.id) is None, "deleted once submitted"
    assert CANARY.encode() not in database_bytes(stack)
    assert CANARY.encode() not in stack.slack.raw_traffic()
    assert CANARY not in repr(await stack.rt.store.get(final.id))
    for event in await stack.rt.store.audit(final.id):
        assert CANARY not in event.detail


@pytest.mark.parametrize("weak", ["short1!", "alllowercaseletters"])
async def test_weak_password_is_refused_and_cleared(stack: LocalStack, weak: str) -> None:
    view = await open_plan(stack, "db-01 ubuntu-22.04 --reason weak")
    view = await modal_action(stack, view, views.LOGIN_ACTION, "password")
    first, second = password_blocks(view)
    reply = (await stack.submit(view, {first: sr.text_value(weak), second: sr.text_value(weak)})).json()
    assert reply["response_action"] == "update"
    assert weak not in str(reply)
    assert not await stack.rt.store.live()


async def test_without_secret_key_password_logins_are_refused_but_keys_work() -> None:
    from sandbox.devtools.stack import StackOptions

    async with LocalStack(StackOptions(secret_key=False)) as stack:
        view = await open_plan(stack, "db-01 ubuntu-22.04 --reason nokey")
        rebuilt = await modal_action(stack, view, views.LOGIN_ACTION, "password")
        assert "ECSBOT_SECRET_KEY" in str(rebuilt["blocks"])
        reply = (await stack.submit(rebuilt)).json()
        assert reply["response_action"] == "errors"
        assert "ECSBOT_SECRET_KEY" in str(reply["errors"]) or "off" in str(reply["errors"])


def link_of(view: dict[str, Any]) -> str:
    block = next(b for b in view["blocks"] if b.get("block_id") == views.PASSWORD_LINK_BLOCK)
    return block["accessory"]["url"]


def fragment(link: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in link.split("#", 1)[1].split("&"))


def page(stack: LocalStack) -> httpx.AsyncClient:
    """One browser's worth of the password page: it keeps the page session's cookie."""
    return httpx.AsyncClient(base_url=stack.url, headers={"X-Requested-With": "ecsbot"}, timeout=5.0)


async def row_counts(stack: LocalStack) -> dict[str, int]:
    """Rows in every table of the store."""
    query = stack.rt.store.query
    tables = [r["name"] for r in await query("SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: (await query(f"SELECT count(*) AS n FROM [{t}]"))[0]["n"] for t in tables}


async def set_on_page(http: httpx.AsyncClient, link: str, password: str = CANARY) -> httpx.Response:
    opened = await http.post("/password/api/open", json=fragment(link))
    assert opened.status_code == 200, opened.text
    return await http.post("/password/api/set", json={"password": password, "confirm": password})


async def password_view(stack: LocalStack, text: str) -> dict[str, Any]:
    view = await open_plan(stack, text)
    return await modal_action(stack, view, views.LOGIN_ACTION, "password")


async def refreshed(stack: LocalStack, since: int, needle: str) -> dict[str, Any]:
    def find() -> dict[str, Any] | None:
        for call in stack.slack.calls_to("views.update")[since:]:
            if call.ok and needle in str(call.body.get("view")):
                return stack.slack.views[call.body["view_id"]]
        return None

    return await stack.slack.wait_until(find, what=f"the form refreshed with {needle!r}")


async def test_secure_page_path_sets_the_password_outside_slack(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    async with LocalStack(StackOptions(public_url=True)) as stack:
        view = await password_view(stack, "db-01 ubuntu-22.04 --reason secure page")
        link = link_of(view)
        assert link.startswith(stack.url + "/password#"), link
        assert "Sign in with Slack is off" in str(view["blocks"])  # a bearer link says so
        updates = len(stack.slack.calls_to("views.update"))
        async with page(stack) as http:
            assert (await set_on_page(http, link)).status_code == 200
            again = await http.post("/password/api/set", json={"password": CANARY, "confirm": CANARY})
            assert again.status_code == 410
        shown = await refreshed(stack, updates, "Password set")
        assert "through this form's link" in str(shown["blocks"]) and "Kept encrypted until" in str(shown["blocks"])
        reply = await stack.submit(shown)
        assert reply.text == "", reply.text
        request = await stack.slack.wait_until(
            lambda: carded(stack), what="the approval card"
        )
        await stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
        final = await wait_state(stack, request.id, RequestState.SUCCEEDED, RequestState.FAILED)
        assert final.state is RequestState.SUCCEEDED, final.result
        server = stack.sim.state.servers[final.server_id]
        assert server.login_password_sha256 == hashlib.sha256(CANARY.encode()).hexdigest()
        assert CANARY not in caplog.text
        assert CANARY.encode() not in stack.slack.raw_traffic()
        assert CANARY.encode() not in database_bytes(stack)


async def test_a_page_left_open_after_submit_cannot_change_the_password_and_nothing_is_left() -> None:
    """Issue 13, point 1, through the whole bot: submit, then set a password through a link still open."""
    async with LocalStack(StackOptions(public_url=True)) as stack:
        view = await password_view(stack, "db-01 ubuntu-22.04 --reason left open")
        draft = json.loads(view["private_metadata"])["d"]
        updates = len(stack.slack.calls_to("views.update"))
        async with page(stack) as first, page(stack) as second:
            assert (await set_on_page(first, link_of(view))).status_code == 200
            shown = await refreshed(stack, updates, "Password set")
            opened = await second.post("/password/api/open", json=fragment(link_of(shown)))  # "Change password"
            assert opened.status_code == 200
            assert (await second.post("/password/api/info", json={})).json()["current"] is not None
            reply = await stack.submit(shown)
            assert reply.text == "", reply.text
            request = await stack.slack.wait_until(
                lambda: carded(stack), what="the approval card"
            )
            after_submit = len(stack.slack.calls_to("views.update"))
            later = "Later-Pw#77zz"
            late = await second.post("/password/api/set", json={"password": later, "confirm": later})
            assert late.status_code == 410
            assert "already submitted" in late.json()["error"] and request.id in late.json()["error"]
            assert len(stack.slack.calls_to("views.update")) == after_submit  # the closed form is never refreshed
        counts = await row_counts(stack)
        assert counts["tokens"] == 0 and counts["page_sessions"] == 0, counts
        keys = [r["key"] for r in await stack.rt.store.query("SELECT key FROM secrets")]
        assert keys == [f"request:{request.id}"], keys
        audit = [e for e in await stack.rt.store.audit(request.id) if e.action == "password_set"]
        assert len(audit) == 1 and REQUESTER in audit[0].detail and "not verified" in audit[0].detail
        await stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
        final = await wait_state(stack, request.id, RequestState.SUCCEEDED, RequestState.FAILED)
        assert final.state is RequestState.SUCCEEDED, final.result
        server = stack.sim.state.servers[final.server_id]
        assert server.login_password_sha256 == hashlib.sha256(CANARY.encode()).hexdigest()  # the one it was set for
        counts = await row_counts(stack)
        assert counts["tokens"] == counts["page_sessions"] == counts["secrets"] == 0, counts
        assert stack.rt.workflow.draft_ended(draft) is not None


async def test_closing_the_form_kills_its_link() -> None:
    async with LocalStack(StackOptions(public_url=True)) as stack:
        view = await password_view(stack, "db-01 ubuntu-22.04 --reason closed")
        assert view.get("notify_on_close") is True
        link = link_of(view)
        closed = await stack.sender.send(sr.view_closed(view=view, user_id=REQUESTER))
        assert closed.status_code == 200
        async with page(stack) as http:
            refused = await http.post("/password/api/open", json=fragment(link))
        assert refused.status_code == 410 and "closed in Slack" in refused.json()["error"]
        counts = await row_counts(stack)
        assert counts["tokens"] == counts["page_sessions"] == counts["secrets"] == 0, counts


async def test_a_refreshed_form_shows_the_same_unused_link() -> None:
    async with LocalStack(StackOptions(public_url=True)) as stack:
        view = await password_view(stack, "db-01 ubuntu-22.04 --reason reuse")
        again = await modal_action(stack, view, views.LOGIN_ACTION, "password")
        assert link_of(again) == link_of(view)
        assert (await row_counts(stack))["tokens"] == 1


async def test_the_form_refreshes_when_the_password_expires_and_a_late_submit_leads_somewhere() -> None:
    """Issue 13, point 3: no silent expiry."""
    async with LocalStack(StackOptions(public_url=True)) as stack:
        stack.rt.workflow.draft_password_ttl = timedelta(seconds=1.5)  # the setting's floor is minutes; time is short
        view = await password_view(stack, "db-01 ubuntu-22.04 --reason expiry")
        updates = len(stack.slack.calls_to("views.update"))
        async with page(stack) as http:
            assert (await set_on_page(http, link_of(view))).status_code == 200
        shown = await refreshed(stack, updates, "Password set")
        assert "Kept encrypted until" in str(shown["blocks"])
        expired = await refreshed(stack, updates, "expired")
        text = str(expired["blocks"])
        assert "Set password securely" in text and "Set it again" in text
        fresh = link_of(expired)
        assert fresh != link_of(shown)
        drafts = await stack.rt.store.query("SELECT count(*) AS n FROM secrets WHERE key LIKE 'draft:%'")
        assert (await row_counts(stack))["tokens"] == 1 and drafts == [{"n": 0}]
        reply = (await stack.submit(expired)).json()
        assert reply["response_action"] == "update"
        top = str(reply["view"]["blocks"][0])
        assert "expired at" in top and "Set password securely" in top
        assert link_of(reply["view"]) == fresh  # the same live link, not another one
        assert not await stack.rt.store.live()


CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing")
async def test_canary_through_sign_in_with_slack_and_the_browser(caplog, tmp_path: Path) -> None:
    """The new flow end to end in Chromium: the canary reaches the cloud and nothing else, the browser profile too."""
    from playwright.async_api import async_playwright, expect

    caplog.set_level(logging.DEBUG)
    profile = tmp_path / "chromium-profile"
    async with LocalStack(StackOptions(public_url=True, sign_in=True)) as stack:
        stack.slack.openid.signin_as = REQUESTER
        view = await password_view(stack, "db-01 ubuntu-22.04 --reason canary sign-in")
        assert "You sign in with Slack there" in str(view["blocks"])
        updates = len(stack.slack.calls_to("views.update"))
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
            )
            try:
                tab = context.pages[0] if context.pages else await context.new_page()
                await tab.goto(link_of(view))
                await tab.get_by_role("link", name="Sign in with Slack").click()
                await expect(tab.locator("#form")).to_be_visible()
                await tab.get_by_label("New password").fill(CANARY)
                await tab.get_by_label("Type it again").fill(CANARY)
                await tab.locator("#submit").click()
                await expect(tab.locator("#done")).to_be_visible()
            finally:
                await context.close()
        shown = await refreshed(stack, updates, "Password set")
        assert "by you" in str(shown["blocks"]) and "signed in with Slack" in str(shown["blocks"])
        assert (await stack.submit(shown)).text == ""
        request = await stack.slack.wait_until(
            lambda: carded(stack), what="the approval card"
        )
        await stack.click(views.APPROVE_ACTION, request.id, user=APPROVER)
        final = await wait_state(stack, request.id, RequestState.SUCCEEDED, RequestState.FAILED)
        assert final.state is RequestState.SUCCEEDED, final.result
        server = stack.sim.state.servers[final.server_id]
        assert server.login_password_sha256 == hashlib.sha256(CANARY.encode()).hexdigest()
        audit = [e for e in await stack.rt.store.audit(final.id) if e.action == "password_set"]
        assert audit and audit[0].actor == REQUESTER and "signed in with Slack" in audit[0].detail

        needle = CANARY.encode()
        in_profile = sum(p.read_bytes().count(needle) for p in profile.rglob("*") if p.is_file())
        figures = {
            "logs": caplog.text.count(CANARY),
            "database+wal": database_bytes(stack).count(needle),
            "slack traffic": stack.slack.raw_traffic().count(needle),
            "browser profile": in_profile,
        }
        print(f"canary occurrences: {figures}")
        assert figures == {"logs": 0, "database+wal": 0, "slack traffic": 0, "browser profile": 0}
        assert sum(1 for p in profile.rglob("*") if p.is_file()) > 10  # the profile was really written
        counts = await row_counts(stack)
        assert counts["tokens"] == counts["page_sessions"] == counts["secrets"] == 0, counts
