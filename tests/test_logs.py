"""The log scrubber: registered secrets and password-shaped fields never reach a log line."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot import logs

LOGGER = "tests.logs"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """Every test here leaves the process's logging as it found it: root handlers and level, the test logger's
    filters and level, and the scrubber's registry of known secrets. Test order then cannot matter."""
    root, named = logging.getLogger(), logging.getLogger(LOGGER)
    saved = (root.handlers[:], root.level, named.filters[:], named.level, named.handlers[:], set(logs._KNOWN))
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in saved[0]:
                handler.close()
        root.handlers[:], root.level = saved[0], saved[1]
        named.filters[:], named.level, named.handlers[:] = saved[2], saved[3], saved[4]
        logs._KNOWN.clear()
        logs._KNOWN.update(saved[5])


def test_registered_secrets_and_password_fields_are_redacted(caplog) -> None:
    logs.register_secret("xoxb-canary-token-123")
    logger = logging.getLogger(LOGGER)
    logger.addFilter(logs.ScrubFilter())
    with caplog.at_level(logging.INFO, logger=LOGGER):
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
    assert "abc" not in logs._KNOWN
    assert logs.scrub("abc def") == "abc def"


def test_configure_installs_one_scrubbing_handler_at_the_level_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    logs.register_secret("xoxb-configure-canary")
    logs.configure("warning")
    root = logging.getLogger()
    assert len(root.handlers) == 1 and root.level == logging.WARNING
    logging.getLogger("tests.logs.configure").warning("token xoxb-configure-canary adminpass=Canary-Pw-4!")
    logging.getLogger("tests.logs.configure").info("below the level")
    written = stream.getvalue()
    assert "xoxb-configure-canary" not in written and "Canary-Pw-4!" not in written
    assert "WARNING tests.logs.configure: token [redacted]" in written and "below the level" not in written


def test_the_registry_starts_without_this_files_canaries() -> None:
    # Runs after the tests above in file order; with the fixture, the canaries they registered are gone again.
    assert "xoxb-canary-token-123" not in logs._KNOWN and "xoxb-configure-canary" not in logs._KNOWN
