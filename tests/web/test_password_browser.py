"""The password page driven in a real headless Chromium (Debian's /usr/bin/chromium) through Playwright."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from bot.domain.passwords import password_problems

from .conftest import CANARY, CHROMIUM, OTHER, OWNER, PageServer, ServeFactory, Tab

GONE_TEXT = "This link was already used or has expired."
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "password-page.png"

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
    pytest.mark.asyncio(loop_scope="module"),
]

if Path(CHROMIUM).exists():
    from playwright.async_api import expect


async def test_typing_updates_the_checklist_and_the_fragment_is_wiped(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        link = await srv.link()
        _, token = PageServer.parts(link)
        await tab.open(link)
        page = tab.page
        await expect(page).to_have_title("Set the admin password")
        await expect(page.locator("#form")).to_be_visible()
        await expect(page.locator("#os-type")).to_have_text("Linux")
        assert "#" not in page.url and token not in page.url
        assert await page.locator("#rules li").count() == 3
        await expect(page.get_by_label("New password")).to_have_attribute("type", "password")
        await expect(page.get_by_label("Type it again")).to_have_attribute("autocomplete", "new-password")

        await page.get_by_label("New password").press_sequentially("abc")
        await expect(tab.rule("length")).to_have_class("bad")
        await expect(tab.rule("classes")).to_have_class("bad")
        await expect(tab.rule("allowed")).to_have_class("ok")
        await expect(tab.rule("length")).to_contain_text("(not met)")
        await page.get_by_label("New password").press_sequentially("DEF12")
        await expect(tab.rule("length")).to_have_class("ok")
        await expect(tab.rule("classes")).to_have_class("ok")
        await page.get_by_label("New password").press_sequentially(" ")
        await expect(tab.rule("allowed")).to_have_class("bad")
        await page.get_by_label("New password").press("Backspace")
        await expect(tab.rule("allowed")).to_have_class("ok")
        await expect(page.locator("#submit")).to_be_disabled()  # not confirmed yet
        await page.get_by_label("Type it again").press_sequentially("abcDEF12")
        await expect(page.locator("#match")).to_have_attribute("data-state", "match")
        await expect(page.locator("#submit")).to_be_enabled()

        assert len(srv.seen) >= 4  # page, js, css, info: the server saw every request the page made
        for path, headers in srv.seen:  # what reached the server: no token in any URL or header, no Referer
            assert token not in path and token not in str(headers), path
            assert "referer" not in {k.lower() for k in headers}, path
        assert tab.errors == []


async def test_mismatch_keeps_submit_disabled(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        await tab.open(await srv.link())
        page = tab.page
        await page.get_by_label("New password").fill(CANARY)
        await page.get_by_label("Type it again").fill(CANARY + "x")
        await expect(page.locator("#match")).to_have_attribute("data-state", "mismatch")
        await expect(page.locator("#match")).to_contain_text("do not match")
        await expect(page.locator("#submit")).to_be_disabled()
        await page.get_by_label("Type it again").fill(CANARY)
        await expect(page.locator("#submit")).to_be_enabled()


async def test_weak_password_is_refused_live_and_by_the_server(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        await tab.open(await srv.link())
        page = tab.page
        await page.get_by_label("New password").fill("password")
        await page.get_by_label("Type it again").fill("password")
        await expect(tab.rule("classes")).to_have_class("bad")
        await expect(page.locator("#submit")).to_be_disabled()
        # Someone bypassing the page's checks still meets the server's: 422, shown on the page, token kept.
        await page.evaluate("document.getElementById('submit').disabled = false")
        await page.locator("#submit").click()
        await expect(page.locator("#problems")).to_be_visible()
        await expect(page.locator("#problems-list")).to_contain_text("at least three")
        assert await srv.stored_password() is None
        await page.get_by_label("New password").fill(CANARY)
        await page.get_by_label("Type it again").fill(CANARY)
        await page.locator("#submit").click()
        await expect(page.locator("#done")).to_be_visible()
        assert await srv.stored_password() == CANARY


async def test_windows_rules_live_and_on_the_server(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        await tab.open(await srv.link(os_type="Windows"))
        page = tab.page
        await expect(page.locator("#os-type")).to_have_text("Windows")
        await expect(tab.rule("username")).to_contain_text("Administrator")
        for bad in ("Xrotartsinimda9!", "My-Administrator1", "Zz9!adm-Qwerty"):
            assert password_problems(bad, os_type="Linux") == []
            await page.get_by_label("New password").fill(bad)
            await page.get_by_label("Type it again").fill(bad)
            await expect(tab.rule("username")).to_have_class("bad")
            await expect(tab.rule("classes")).to_have_class("ok")
            await expect(page.locator("#submit")).to_be_disabled()
        await page.evaluate("document.getElementById('submit').disabled = false")
        await page.locator("#submit").click()
        await expect(page.locator("#problems-list")).to_contain_text("Administrator")
        assert await srv.stored_password() is None
        await page.get_by_label("New password").fill(CANARY)
        await page.get_by_label("Type it again").fill(CANARY)
        await expect(tab.rule("username")).to_have_class("ok")
        await expect(page.locator("#submit")).to_be_enabled()


async def test_success_then_a_second_use_is_refused(serve_pages: ServeFactory, tab: Tab, tmp_path: Path) -> None:
    async with serve_pages() as srv:
        link = await srv.link(draft_id="draft-ok")
        await tab.open(link)
        page = tab.page
        await page.get_by_label("New password").fill(CANARY)
        await page.get_by_label("Type it again").fill(CANARY)
        await expect(page.locator("#submit")).to_be_enabled()
        shot = tmp_path / "password-page.png"
        await page.screenshot(path=str(shot))
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        if os.environ.get("ECSBOT_UPDATE_SCREENSHOT") or not SCREENSHOT.exists():
            shutil.copyfile(shot, SCREENSHOT)

        await page.locator("#submit").click()
        await expect(page.locator("#done")).to_contain_text(
            "Password set ✓. Go back to Slack: the form shows it is set. You can close this tab."
        )
        await expect(page.locator("#done-expiry")).to_contain_text("Kept encrypted until")
        await expect(page.locator("#form")).to_be_hidden()
        assert await srv.stored_password("draft-ok") == CANARY and srv.set_calls == ["draft-ok"]
        assert await page.locator("body").inner_text() and CANARY not in await page.content()
        assert tab.errors == []

        await tab.open(link)  # the same link again
        await expect(page.locator("#gone")).to_contain_text("This link was already opened")
        await expect(page.locator("#form")).to_be_hidden()


async def test_generated_password_is_shown_once(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        link = await srv.link(draft_id="draft-gen", os_type="Windows")
        await tab.open(link)
        page = tab.page
        await page.get_by_role("button", name="Generate a strong password").click()
        await expect(page.locator("#generated")).to_be_visible()
        value = await page.locator("#generated-value").input_value()
        assert password_problems(value, os_type="Windows") == []
        assert await srv.stored_password("draft-gen") == value and srv.set_calls == ["draft-gen"]
        await expect(page.locator("#generated")).to_contain_text("Shown once")
        await page.get_by_role("button", name="Copy").click()
        await expect(page.locator("#copied")).not_to_have_text("")
        await tab.open(link)
        await expect(page.locator("#gone")).to_be_visible()
        assert value not in await page.content()


async def test_expired_link_shows_the_expired_message(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        link = await srv.link()
        srv.clock.advance(601)
        await tab.open(link)
        await expect(tab.page.locator("#gone")).to_contain_text(GONE_TEXT)
        await expect(tab.page.locator("#gone")).to_contain_text("Go back to the form in Slack")
        await expect(tab.page.locator("#gone")).not_to_contain_text("choose Admin password")  # it is chosen already
        await expect(tab.page.locator("#form")).to_be_hidden()


async def test_link_expiring_while_the_page_is_open(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        await tab.open(await srv.link())
        page = tab.page
        await page.get_by_label("New password").fill(CANARY)
        await page.get_by_label("Type it again").fill(CANARY)
        srv.clock.advance(600)
        await page.locator("#submit").click()
        await expect(page.locator("#gone")).to_contain_text("This page's time is up")
        assert await page.get_by_label("New password").input_value() == ""
        assert await srv.stored_password() is None


async def test_another_users_link_is_refused(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        link = await srv.link(user_id=OWNER)
        await tab.open(link.replace(f"u={OWNER}", f"u={OTHER}"))
        await expect(tab.page.locator("#gone")).to_contain_text(GONE_TEXT)
        await tab.open(link)  # the owner's own link still works: the refused attempt did not use it up
        await expect(tab.page.locator("#form")).to_be_visible()


async def test_a_link_without_its_token_explains_itself(serve_pages: ServeFactory, tab: Tab) -> None:
    async with serve_pages() as srv:
        await tab.open(srv.url + "/password")
        await expect(tab.page.locator("#gone")).to_contain_text("This link is incomplete")
