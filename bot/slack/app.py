"""The Bolt AsyncApp: one place that wires listeners, quiet loggers and the error handler."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from slack_bolt.async_app import AsyncApp

from bot.slack.listeners import approval, changeos

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)


def quiet_slack_loggers() -> None:
    """Bolt logs a failed request's full body at INFO and slack_sdk logs payloads at DEBUG: keep both above that."""
    for name in ("slack_bolt", "slack_sdk", "slack_sdk.web", "slack_sdk.socket_mode"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_bolt_app(rt: Runtime) -> AsyncApp:
    quiet_slack_loggers()
    app = AsyncApp(
        client=rt.slack,
        # bot.slack.edge verifies every request on its raw bytes before Bolt sees it, in both modes.
        request_verification_enabled=False,
        logger=logging.getLogger("slack_bolt.app"),
    )
    changeos.register(app, rt)
    approval.register(app, rt)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        # Never the body: a fallback-modal submission carries a password in state.values.
        kind = body.get("type") or body.get("command") or "request"
        log.error("listener failed on %s: %s", kind, type(error).__name__, exc_info=(type(error), error, None))

    return app
