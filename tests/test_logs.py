"""The log scrubber: registered secrets and password-shaped fields never reach a log line."""

from __future__ import annotations

import io
import json
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


# ----------------------------------------------------------------------------------------------------------------
# Formats, context fields and quiet libraries (ECSBOT_LOG_FORMAT, ECSBOT_LOG_LEVEL)


def capture_stderr(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """Called in the test body: pytest puts its own sys.stderr back between a fixture's set-up and the test."""
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    return stream


@pytest.fixture(autouse=True)
def restore_quiet_loggers() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in logs.QUIET_LOGGERS}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def test_json_lines_carry_the_context_fields_and_stay_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = capture_stderr(monkeypatch)
    logs.register_secret("xoxb-json-canary-123")
    logs.configure("INFO", "json")
    log = logging.getLogger("tests.logs.json")
    with logs.log_context(request_id="CR-7", server="web-01"):
        log.info("approved with token %s", "xoxb-json-canary-123")
        with logs.log_context(job_id="job-1"):
            log.warning('cloud said {"adminpass": "Canary-Pw-5!"}\nsecond line')
        log.info("one line", extra={"job_id": "job-2"})
    log.info("outside")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    lines = stderr.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]  # one object per line, even for a message with a newline
    assert len(entries) == 5, lines
    first, second, third, outside, failed = entries
    assert first["message"] == "approved with token [redacted]"
    assert (first["level"], first["logger"], first["request_id"], first["server"]) == (
        "INFO",
        "tests.logs.json",
        "CR-7",
        "web-01",
    )
    assert "job_id" not in first and first["time"].endswith("+00:00")
    assert second["job_id"] == "job-1" and second["request_id"] == "CR-7" and "Canary-Pw-5!" not in lines[1]
    assert third["job_id"] == "job-2" and third["server"] == "web-01"
    assert set(outside) == {"time", "level", "logger", "message"}
    assert "RuntimeError: boom" in failed["exception"]
    assert "xoxb-json-canary-123" not in stderr.getvalue()


def test_text_lines_name_the_context_in_brackets(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = capture_stderr(monkeypatch)
    logs.configure("INFO")
    with logs.log_context(request_id="CR-8", server=None):
        logging.getLogger("tests.logs.text").info("submitted")
    assert stderr.getvalue().rstrip().endswith("INFO tests.logs.text: submitted [request_id=CR-8]")


def test_log_context_names_only_known_fields() -> None:
    with pytest.raises(ValueError, match="unknown log context field"), logs.log_context(user="U1"):
        pass


def test_http_client_libraries_are_quiet_unless_debugging(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = capture_stderr(monkeypatch)
    logs.configure("INFO")
    logging.getLogger("httpx").info("HTTP Request: GET https://ecs… 200 OK")
    logging.getLogger("httpcore.http11").info("receive_response_headers")
    logging.getLogger("bot.tracker").info("CR-9 succeeded")
    written = stderr.getvalue()
    assert "HTTP Request" not in written and "receive_response_headers" not in written
    assert "bot.tracker: CR-9 succeeded" in written
    logs.configure("debug")
    logging.getLogger("httpx").info("HTTP Request: GET https://ecs… 200 OK")
    logging.getLogger("httpcore.http11").debug("receive_response_headers")
    assert "HTTP Request" in stderr.getvalue() and "receive_response_headers" not in stderr.getvalue()


@pytest.mark.parametrize(
    ("level", "fmt", "words"),
    [("LOUD", "text", "ECSBOT_LOG_LEVEL is 'LOUD'"), ("INFO", "xml", "ECSBOT_LOG_FORMAT is 'xml'")],
)
def test_configure_refuses_unknown_levels_and_formats_in_one_sentence(level: str, fmt: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        logs.configure(level, fmt)
