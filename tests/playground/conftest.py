"""The playground page in Debian's Chromium (Playwright), against a Playground: the real bot, the fake Slack and the
simulator on loopback, run fast. One browser per module; a fresh playground (and database) per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from sandbox.playground.server import Playground
from tests.support.browser import CHROMIUM

WAIT_MS = 10_000  # a condition on the page; a whole OS change at speed 200 takes about 2 s
SPEED = 200.0

if Path(CHROMIUM).exists():
    from playwright.async_api import Browser, Page, expect

    expect.set_options(timeout=WAIT_MS)
else:  # pragma: no cover - the browser tests are skipped
    Browser = Page = object  # type: ignore[misc,assignment]


@pytest_asyncio.fixture(loop_scope="module")
async def playground() -> AsyncIterator[Playground]:
    async with Playground(speed=SPEED) as pg:
        yield pg


class Slack:
    """The page as a person uses it, plus the errors it logged."""

    def __init__(self, page: Page, pg: Playground) -> None:
        self.page = page
        self.pg = pg
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    @property
    def modal(self):
        return self.page.locator("#modal")

    async def act_as(self, role: str) -> None:
        await self.page.locator(f'#people button[data-role="{role}"]').click()

    async def open_channel(self, channel_id: str) -> None:
        await self.page.locator(f'#channels button[data-channel="{channel_id}"]').click()

    async def type(self, line: str) -> None:
        box = self.page.locator("#message-box")
        await box.fill(line)
        await box.press("Enter")

    def message(self, text: str):
        """The top-level message containing `text` (thread replies included in what it contains)."""
        return self.page.locator("#messages > .msg").filter(has_text=text)

    def ephemerals(self):
        return self.page.locator("#messages .msg.ephemeral")


@pytest_asyncio.fixture(loop_scope="module")
async def slack(browser: Browser, playground: Playground) -> AsyncIterator[Slack]:
    context = await browser.new_context(viewport={"width": 1200, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        await page.goto(playground.url)
        await page.locator('body[data-ready="true"]').wait_for()
        yield Slack(page, playground)
    finally:
        await context.close()
