"""The Bolt AsyncApp: one place that wires listeners, quiet loggers and the error handler."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

# What Bolt's constructor reads from the process environment on its own. The composition root has read the settings
# already: Bolt must not act on them behind its back (a token beside our client is logged as "will be unused";
# SLACK_CLIENT_ID and SLACK_CLIENT_SECRET, set for Sign in with Slack, would turn on Bolt's OAuth installation flow).
BOLT_ENVIRONMENT = (
    "SLACK_BOT_TOKEN",
    "SLACK_SIGNING_SECRET",
    "SLACK_VERIFICATION_TOKEN",
    "SLACK_CLIENT_ID",
    "SLACK_CLIENT_SECRET",
    "SLACK_SCOPES",
    "SLACK_USER_SCOPES",
    "SLACK_INSTALLATION_FILE_BASE_DIR",
    "SLACK_STATE_FILE_BASE_DIR",
)


def quiet_slack_loggers() -> None:
    """Bolt logs a failed request's full body at INFO and slack_sdk logs payloads at DEBUG: keep both above that."""
    for name in ("slack_bolt", "slack_sdk", "slack_sdk.web", "slack_sdk.socket_mode"):
        logging.getLogger(name).setLevel(logging.WARNING)


@contextmanager
def _environment_hidden(names: tuple[str, ...]) -> Iterator[None]:
    """At start-up, before any other thread runs: Bolt's constructor does not see these variables."""
    hidden = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(hidden)


def build_bolt_app(client: AsyncWebClient, *registrations: Callable[[AsyncApp], None]) -> AsyncApp:
    """An app around our Web API client; each registration adds its listeners (in order: Bolt tries them so)."""
    quiet_slack_loggers()
    with _environment_hidden(BOLT_ENVIRONMENT):
        app = AsyncApp(
            client=client,
            # bot.slack.edge verifies every request on its raw bytes before Bolt sees it, in both modes, answers
            # ssl_check itself, and passes on only commands and interactions: Bolt's middleware for the rest (URL
            # verification, the bot's own events, function tokens, assistant threads) would run on every ack for
            # nothing.
            request_verification_enabled=False,
            ssl_check_enabled=False,
            url_verification_enabled=False,
            ignoring_self_events_enabled=False,
            ignoring_self_assistant_message_events_enabled=False,
            attaching_function_token_enabled=False,
            attaching_conversation_kwargs_enabled=False,
            # The answer leaves when the ack function returns (no 10 ms poll for it). What follows an ack is handed
            # to bot/slack/after_ack.py, not to Bolt's `lazy=`, whose deep copy of each request costs more than the
            # whole dispatch.
            process_before_response=True,
            logger=logging.getLogger("slack_bolt.app"),
        )
    for register in registrations:
        register(app)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        # Never the body: a fallback-modal submission carries a password in state.values.
        kind = body.get("type") or body.get("command") or "request"
        log.error("listener failed on %s: %s", kind, type(error).__name__, exc_info=(type(error), error, None))

    return app
