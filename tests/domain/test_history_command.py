from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.command import HelpCommand, HistoryCommand, UsageError, parse_command
from bot.domain.since import parse_since, since_moment


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("history", HistoryCommand()),
        ("HISTORY web-01", HistoryCommand(server="web-01")),
        ("history web-01 --mine --since 7d", HistoryCommand("web-01", True, timedelta(days=7))),
        ("history --since=12h --mine", HistoryCommand(None, True, timedelta(hours=12))),
        ("history —since 2w", HistoryCommand(None, False, timedelta(weeks=2))),
        ("history --since 2025-06-01", HistoryCommand(None, False, datetime(2025, 6, 1, tzinfo=UTC))),
        ("history --help", HelpCommand()),
    ],
)
def test_history_parses(text: str, expected: object) -> None:
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("history a b", "takes one server"),
        ("history --since", "--since needs a value"),
        ("history --since soon", "--since takes an age such as 7d"),
        ("history --since 0d", "out of range"),
        ("history --since 7d --since 1d", "given twice"),
        ("history --mine=yes", "--mine takes no value"),
        ("history --sinse 7d", "Did you mean --since?"),
        ("history " + "x" * 65, "too long"),
    ],
)
def test_history_refuses_with_a_sentence(text: str, said: str) -> None:
    parsed = parse_command(text)
    assert isinstance(parsed, UsageError) and said in parsed.message


def test_since_moment_counts_back_from_the_callers_clock() -> None:
    now = datetime(2025, 6, 10, 12, tzinfo=UTC)
    assert since_moment(parse_since("3d"), now) == datetime(2025, 6, 7, 12, tzinfo=UTC)
    assert since_moment(parse_since("2025-06-01T08:00:00+02:00"), now) == datetime(2025, 6, 1, 6, tzinfo=UTC)
