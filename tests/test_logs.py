"""The log scrubber: registered secrets and password-shaped fields never reach a log line."""

from __future__ import annotations

import logging

from bot import logs


def test_registered_secrets_and_password_fields_are_redacted(caplog) -> None:
    logs.register_secret("xoxb-canary-token-123")
    logger = logging.getLogger("tests.logs")
    logger.addFilter(logs.ScrubFilter())
    with caplog.at_level(logging.INFO, logger="tests.logs"):
        logger.info("token %s used", "xoxb-canary-token-123")
        logger.info('body {"adminpass": "Canary-Pw-1!", "imageid": "x"}')
        logger.info("form password=Canary-Pw-2!&reason=ok")
        try:
            raise ValueError("bad adminpass: Canary-Pw-3!")
        except ValueError:
            logger.exception("failed")
    text = caplog.text
    for canary in ("xoxb-canary-token-123", "Canary-Pw-1!", "Canary-Pw-2!", "Canary-Pw-3!"):
        assert canary not in text
    assert "[redacted]" in text and '"imageid": "x"' in text


def test_short_values_are_not_registered() -> None:
    logs.register_secret("abc")
    assert logs.scrub("abc def") == "abc def"
