"""A real aiohttp server with only the password page registered, on a real Store, Workflow and SecretBox.

`serve_pages` is a plain (sync) fixture returning an async context manager factory, so both the function-loop HTTP
tests and the module-loop browser tests can use it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.typedefs import Handler
from pydantic import SecretStr

from bot.domain.policy import Policy
from bot.secretbox import SecretBox
from bot.services.workflow import Workflow
from bot.store import SQLiteStore
from bot.web.password_page import PasswordPages
from bot.web.slack_signin import SlackSignIn
from sandbox.devtools.fake_slack import FakeSlack
from tests.support.browser import CHROMIUM
from tests.support.clocks import DateClock

OWNER = "U01OWNER01"
OTHER = "U02OTHER02"
CANARY = "Canary-Pw#8d1f4Qx"  # valid for Linux and Windows; must never leave the page unencrypted


@dataclass
class PageServer:
    url: str
    pages: PasswordPages
    store: SQLiteStore
    workflow: Workflow
    box: SecretBox
    clock: DateClock
    db_path: Path
    set_calls: list[str] = field(default_factory=list)
    open_calls: list[str] = field(default_factory=list)
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path and query, headers) as received
    slack: FakeSlack | None = None  # the OpenID provider, when sign-in is on

    async def link(self, draft_id: str = "draft-1", user_id: str = OWNER, os_type: str = "Linux") -> str:
        return await self.pages.link_for(draft_id=draft_id, user_id=user_id, os_type=os_type)

    @staticmethod
    def parts(link: str) -> tuple[str, str]:
        """(u, t) from the link's fragment."""
        fragment = link.split("#", 1)[1]
        values = dict(p.split("=", 1) for p in fragment.split("&"))
        return values["u"], values["t"]

    async def stored_password(self, draft_id: str = "draft-1") -> str | None:
        blob = await self.store.get_secret(f"draft:{draft_id}")
        return None if blob is None else self.box.decrypt(blob).get_secret_value()


ServeFactory = Callable[..., AbstractAsyncContextManager[PageServer]]


@pytest.fixture
def serve_pages(tmp_path: Path) -> ServeFactory:
    @asynccontextmanager
    async def factory(
        *, ttl_seconds: float = 600, with_on_set: bool = True, signin: bool = False
    ) -> AsyncIterator[PageServer]:
        clock = DateClock(datetime(2025, 3, 1, 12, 0, tzinfo=UTC))
        slack = None
        sign_in = None
        if signin:
            from slack_sdk.web.async_client import AsyncWebClient

            from sandbox.devtools.fake_openid import CLIENT_ID, CLIENT_SECRET

            slack = FakeSlack()
            await slack.start()
            sign_in = SlackSignIn(
                client_id=CLIENT_ID,
                client_secret=SecretStr(CLIENT_SECRET),
                authorize_url=slack.openid_authorize_url,
                api=AsyncWebClient(base_url=slack.api_url),
                bot=AsyncWebClient(token=slack.bot_token, base_url=slack.api_url),
            )
        db_path = tmp_path / "ecsbot.db"
        store = SQLiteStore(db_path, clock=clock)
        box = SecretBox(SecretBox.generate_key())
        workflow = Workflow(store, Policy.parse(""), box, now=clock)
        pages = PasswordPages(
            store, workflow, "http://placeholder.invalid", ttl_seconds=ttl_seconds, now=clock, signin=sign_in
        )
        seen: list[tuple[str, dict[str, str]]] = []

        @web.middleware
        async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
            seen.append((request.path_qs, dict(request.headers)))
            return await handler(request)

        app = web.Application(middlewares=[record])
        pages.register(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        pages.public_url = url  # as the runtime does once the port is known
        server = PageServer(url, pages, store, workflow, box, clock, db_path, seen=seen, slack=slack)
        if with_on_set:

            async def on_set(draft_id: str) -> None:
                server.set_calls.append(draft_id)

            async def on_open(draft_id: str) -> None:
                server.open_calls.append(draft_id)

            pages.on_set = on_set
            pages.on_open = on_open
        try:
            yield server
        finally:
            await runner.cleanup()
            await store.aclose()
            if slack is not None:
                await slack.stop()

    return factory


# ------------------------------------------------------------------ the browser (Debian's Chromium through Playwright)

WAIT_MS = 5000

if Path(CHROMIUM).exists():
    from playwright.async_api import Browser, Page, expect
else:  # pragma: no cover - the browser tests are skipped
    Browser = Page = object  # type: ignore[misc,assignment]


class Tab:
    """One browser tab plus the errors it logged (a CSP violation blocking our own assets would show here)."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    async def open(self, link: str) -> None:
        await self.page.goto("about:blank")  # a fresh document, as a click on the Slack button gives
        await self.page.goto(link)
        await expect(self.page.locator("#loading")).to_be_hidden(timeout=WAIT_MS)

    def rule(self, rule_id: str):
        return self.page.locator(f'#rules li[data-rule="{rule_id}"]')


@pytest_asyncio.fixture(loop_scope="module")
async def tab(browser: Browser) -> AsyncIterator[Tab]:
    context = await browser.new_context(viewport={"width": 560, "height": 680})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    try:
        yield Tab(page)
    finally:
        await context.close()
