"""The one aiohttp server: Slack's events endpoint, health, and (when configured) the secure password page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp

if TYPE_CHECKING:
    from bot.runtime import Runtime

MAX_BODY = 1024 * 1024  # Slack's payloads are far smaller; anything bigger is not Slack


def build_web_app(rt: Runtime, bolt: AsyncApp | None) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY)

    async def slack_events(request: web.Request) -> web.StreamResponse:
        assert bolt is not None
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    async def healthz(_: web.Request) -> web.StreamResponse:
        live = len(rt.store.live())
        return web.json_response(
            {
                "ok": True,
                "live_requests": live,
                "tracker_lease": rt.tracker.has_lease,
                "ecs_calls": rt.tracker.ecs_calls,
            }
        )

    if bolt is not None:
        app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    if rt.password_pages is not None:
        rt.password_pages.register(app)
    return app
