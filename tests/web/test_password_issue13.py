"""The password page cannot mislead: each point seen in Chromium (issue 13), and Sign in with Slack against the fake.

Every test drives Debian's Chromium through Playwright against the real page, store, workflow and secret box; the
sign-in tests use the fake Slack as the OpenID provider.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.domain.request import ChangeRequest, LoginMethod
from bot.services.workflow import DraftEnd
from tests.support.browser import ARGS, CHROMIUM

from .conftest import CANARY, OTHER, OWNER, WAIT_MS, PageServer, ServeFactory, Tab

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
    pytest.mark.asyncio(loop_scope="module"),
]

if Path(CHROMIUM).exists():
    from playwright.async_api import Browser, async_playwright, expect
else:  # pragma: no cover - the module is skipped
    Browser = object  # type: ignore[misc,assignment]


def a_request(**changes: object) -> ChangeRequest:
    fields: dict[str, object] = dict(
        requester=OWNER,
        origin_channel="C01CHAN001",
        server_id="srv-1",
        server_name="web-01",
        target_image_id="img-1",
        target_image_name="ubuntu-22.04",
        target_os_type="Linux",
        login=LoginMethod.PASSWORD,
        has_password=True,
        reason="issue 13",
        approvals_channel="C01APPROVE1",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    fields.update(changes)
    return ChangeRequest(**fields)  # type: ignore[arg-type]


async def row_counts(srv: PageServer) -> dict[str, int]:
    return {
        table: (await srv.store.query(f"SELECT count(*) AS n FROM {table}"))[0]["n"]
        for table in ("tokens", "page_sessions", "secrets")
    }


async def fill(tab: Tab, password: str = CANARY, confirm: str | None = None) -> None:
    await tab.page.get_by_label("New password").fill(password)
    await tab.page.get_by_label("Type it again").fill(confirm if confirm is not None else password)


# ------------------------------------------------------------------------ 1. a link still open after submit


async def test_1_a_page_still_open_after_the_form_was_submitted_cannot_set_a_password(
    serve_pages: ServeFactory, tab: Tab
) -> None:
    async with serve_pages() as srv:
        first = await srv.link()
        await tab.open(first)
        await fill(tab)
        await tab.page.locator("#submit").click()
        await expect(tab.page.locator("#done")).to_be_visible()
        second = await srv.link()  # the refreshed form's "Change password" link, opened and left open
        assert second != first
        await tab.open(second)
        await expect(tab.page.locator("#form")).to_be_visible()
        await expect(tab.page.locator("#current")).to_contain_text("already set")

        stored = await srv.workflow.submit(a_request(), draft_id="draft-1")  # the form is submitted meanwhile

        await fill(tab, "Later-Pw#77zz")
        await tab.page.locator("#submit").click()
        await expect(tab.page.locator("#gone")).to_contain_text("already submitted")
        await expect(tab.page.locator("#gone")).to_contain_text(stored.id)
        await expect(tab.page.locator("#done")).to_be_hidden()
        assert (await srv.workflow.password_for(stored.id)).get_secret_value() == CANARY  # the password it was set for
        assert await srv.stored_password("draft-1") is None
        assert await row_counts(srv) == {"tokens": 0, "page_sessions": 0, "secrets": 1}  # only the request's own
        with pytest.raises(Exception, match="draft"):
            await srv.link()  # no new link for a submitted form
        assert srv.workflow.draft_ended("draft-1") is not None


async def test_1_closing_the_form_kills_its_open_page(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        await tab.open(await srv.link())
        await srv.workflow.close_draft("draft-1", DraftEnd("This form was closed in Slack.", final=True))
        await fill(tab)
        await tab.page.locator("#submit").click()
        await expect(tab.page.locator("#gone")).to_contain_text("closed in Slack")
        assert await row_counts(srv) == {"tokens": 0, "page_sessions": 0, "secrets": 0}


# --------------------------------------------------------------------------- 2. whoever holds the link


async def test_2_sign_in_with_slack_right_user_passes_and_is_recorded(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages(signin=True) as srv:
        assert srv.slack is not None
        srv.slack.openid.signin_as = OWNER
        await tab.open(await srv.link())
        await expect(tab.page.locator("#signin")).to_be_visible()
        await expect(tab.page.locator("#form")).to_be_hidden()  # the link alone shows no form
        await tab.page.get_by_role("link", name="Sign in with Slack").click()
        await expect(tab.page.locator("#form")).to_be_visible(timeout=WAIT_MS)
        await expect(tab.page.locator("#who")).to_contain_text("Signed in with Slack")
        await expect(tab.page.locator("#bearer")).to_be_hidden()
        assert "signin" not in tab.page.url and "code=" not in tab.page.url
        query = srv.slack.openid.authorizations[-1]
        assert query["scope"] == "openid" and query["team"] == srv.slack.team_id and query["nonce"]
        assert query["redirect_uri"] == srv.url + "/password/signin/callback"
        await fill(tab)
        await tab.page.locator("#submit").click()
        await expect(tab.page.locator("#done")).to_be_visible()
        kept = await srv.workflow.draft_password_info("draft-1")
        assert kept is not None and kept.set_by == OWNER and kept.set_via == "slack-signin"
        stored = await srv.workflow.submit(a_request(), draft_id="draft-1")
        audit = [e for e in await srv.store.audit(stored.id) if e.action == "password_set"]
        assert len(audit) == 1 and audit[0].actor == OWNER and "signed in with Slack" in audit[0].detail
        assert CANARY not in str(srv.slack.raw_traffic())


async def test_2_a_forwarded_link_opened_by_another_user_is_refused(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages(signin=True) as srv:
        assert srv.slack is not None
        srv.slack.openid.signin_as = OTHER  # the colleague the link was forwarded to
        await tab.open(await srv.link())
        await tab.page.get_by_role("link", name="Sign in with Slack").click()
        await expect(tab.page.locator("#gone")).to_contain_text("someone other than the person this link was made")
        await expect(tab.page.locator("#form")).to_be_hidden()
        assert await srv.stored_password() is None
        assert (await row_counts(srv))["page_sessions"] == 0
        assert srv.open_calls == ["draft-1"]  # the owner's form was told: it now offers a fresh link


async def test_2_another_workspace_is_refused(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages(signin=True) as srv:
        assert srv.slack is not None
        srv.slack.openid.signin_as = OWNER
        srv.slack.openid.signin_team = "T09OTHER99"
        await tab.open(await srv.link())
        await tab.page.get_by_role("link", name="Sign in with Slack").click()
        await expect(tab.page.locator("#gone")).to_contain_text("another Slack workspace")
        assert await srv.stored_password() is None


async def test_2_the_link_alone_is_refused_by_the_api_too(serve_pages: ServeFactory) -> None:
    import httpx

    async with serve_pages(signin=True) as srv:
        u, t = PageServer.parts(await srv.link())
        async with httpx.AsyncClient(base_url=srv.url, headers={"X-Requested-With": "ecsbot"}) as http:
            assert (await http.post("/password/api/open", json={"u": u, "t": t})).json()["signin"] is True
            for path in ("info", "set", "generate"):
                r = await http.post(f"/password/api/{path}", json={"password": CANARY, "confirm": CANARY})
                assert r.status_code == 401 and r.json()["signin"] == "password/signin", path
            # A callback with a made-up state, or without the browser binding cookie, proves nothing.
            forged = await http.get("/password/signin/callback", params={"code": "x", "state": "S" * 43})
            assert forged.status_code == 303 and forged.headers["location"].endswith("signin=expired")
            start = await http.get("/password/signin")
            assert start.status_code == 302
            state = httpx.URL(start.headers["location"]).params["state"]
            http.cookies.delete("ecsbot_pw_signin", path="/password/signin")
            no_binding = await http.get("/password/signin/callback", params={"code": "x", "state": state})
            assert no_binding.headers["location"].endswith("signin=failed")
        assert await srv.stored_password() is None


async def test_2_without_sign_in_the_form_warns_it_is_a_bearer_link(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        await tab.open(await srv.link())
        await expect(tab.page.locator("#bearer")).to_be_visible()
        await expect(tab.page.locator("#bearer")).to_contain_text("Sign in with Slack is off")


# ------------------------------------------------------------------------------ 3. no silent expiry


async def test_3_the_page_shows_when_the_stored_password_expires_and_it_does(
    serve_pages: ServeFactory, tab: Tab
) -> None:
    async with serve_pages() as srv:
        await tab.open(await srv.link())
        await fill(tab)
        await tab.page.locator("#submit").click()
        await expect(tab.page.locator("#done-expiry")).to_contain_text("Kept encrypted until")
        await expect(tab.page.locator("#done-expiry")).to_contain_text("about 15 minutes")
        second = await srv.link()
        srv.clock.advance(15 * 60)
        assert await srv.stored_password() is None
        assert await srv.workflow.expire_draft_password("draft-1")
        await tab.open(second)
        await expect(tab.page.locator("#gone")).to_contain_text("expired")
        await expect(tab.page.locator("#gone")).to_contain_text("offers a fresh link")
        assert await row_counts(srv) == {"tokens": 0, "page_sessions": 0, "secrets": 0}
        fresh = await srv.link()  # the form's refresh: a fresh link that works
        await tab.open(fresh)
        await expect(tab.page.locator("#form")).to_be_visible()


async def test_3_a_link_never_outlives_the_password_it_would_replace(serve_pages: ServeFactory) -> None:
    async with serve_pages() as srv:
        srv.workflow.draft_password_ttl = timedelta(minutes=5)
        from pydantic import SecretStr

        await srv.workflow.keep_draft_password("draft-1", SecretStr(CANARY), set_by=OWNER, set_via="link")
        issued = await srv.pages.issue(draft_id="draft-1", user_id=OWNER, os_type="Linux")
        kept = await srv.workflow.draft_password_info("draft-1")
        assert kept is not None and issued.expires_at == kept.expires_at == srv.clock() + timedelta(minutes=5)


# ------------------------------------------------------------------------------ 4. no JavaScript


async def test_4_without_javascript_the_page_says_what_to_do(serve_pages: ServeFactory, browser: Browser) -> None:
    async with serve_pages() as srv:
        context = await browser.new_context(java_script_enabled=False)
        try:
            page = await context.new_page()
            await page.goto(await srv.link())
            await expect(page.locator("noscript")).to_have_count(1)
            body = await page.locator("body").inner_text()
            assert "needs JavaScript" in body and "Key pair" in body
            await expect(page.locator("#loading")).to_be_hidden()
        finally:
            await context.close()


# ------------------------------------------------------------------------------ 5. browser history


async def test_5_a_link_found_in_chromiums_history_opens_nothing(
    serve_pages: ServeFactory, browser: Browser, tmp_path: Path
) -> None:
    async with serve_pages() as srv:
        profile = tmp_path / "profile"
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                str(profile), executable_path=CHROMIUM, headless=True, args=ARGS
            )
            page = context.pages[0] if context.pages else await context.new_page()
            await page.goto(await srv.link())  # opened, not used: the person walked away
            await expect(page.locator("#form")).to_be_visible(timeout=WAIT_MS)
            await context.close()
        history = profile / "Default" / "History"
        copy = tmp_path / "History.copy"
        shutil.copyfile(history, copy)
        with sqlite3.connect(copy) as db:
            urls = [row[0] for row in db.execute("SELECT url FROM urls")]
        found = [u for u in urls if "#u=" in u and "&t=" in u]
        assert found, f"Chromium kept no link in its history this time: {urls}"  # the premise of the issue
        for url in found:
            context = await browser.new_context()
            try:
                tab = Tab(await context.new_page())
                await tab.open(url)
                await expect(tab.page.locator("#form")).to_be_hidden()
                await expect(tab.page.locator("#gone")).to_contain_text("already opened")
            finally:
                await context.close()
        assert await srv.stored_password() is None


# ------------------------------------------------------------------------------ 6. the link's lifetime


async def test_6_the_link_lifetime_comes_from_the_settings(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages(ttl_seconds=120) as srv:
        link = await srv.link()
        srv.clock.advance(121)
        await tab.open(link)
        await expect(tab.page.locator("#gone")).to_be_visible()
        await tab.open(await srv.link())
        # The page counts down in the browser's real time: a slow browser may show 1:59 by the time it is read.
        await expect(tab.page.locator("#expiry")).to_contain_text(re.compile(r"works for (2:00|1:5[0-9]) more"))


# ------------------------------------------------------------------------------ 7. accessibility and texts


async def test_7_enter_on_a_weak_password_is_explained_in_a_live_region(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        await tab.open(await srv.link())
        page = tab.page
        await fill(tab, "password")
        await expect(page.get_by_label("New password")).to_have_attribute("aria-invalid", "true")
        await page.get_by_label("Type it again").press("Enter")
        live = page.locator("#live")
        await expect(live).to_have_attribute("aria-live", "assertive")
        await expect(live).to_contain_text("does not meet these rules yet")
        await expect(live).to_contain_text("At least three of")
        await expect(page.locator("#problems")).to_be_visible()
        await fill(tab, CANARY, CANARY + "x")
        await expect(page.get_by_label("Type it again")).to_have_attribute("aria-invalid", "true")
        await expect(page.get_by_label("New password")).to_have_attribute("aria-invalid", "false")
        await page.get_by_label("New password").press("Enter")
        await expect(live).to_contain_text("Type the same password again")
        assert await srv.stored_password() is None


async def test_7_the_countdown_counts_down(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        await tab.open(await srv.link())
        expiry = tab.page.locator("#expiry")
        await expect(expiry).to_contain_text("This page works for")
        first = await expiry.inner_text()
        await expect(expiry).not_to_have_text(first, timeout=3000)  # a second later it says less


async def test_7_the_gone_text_does_not_ask_to_choose_what_is_chosen(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        link = await srv.link()
        srv.clock.advance(601)
        await tab.open(link)
        text = await tab.page.locator("#gone").inner_text()
        assert "choose Admin password" not in text and "Go back to the form in Slack" in text
