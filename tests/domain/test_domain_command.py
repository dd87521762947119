from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.command import (
    _QUICK_TEXT,
    MAX_MESSAGE,
    MAX_TEXT,
    USAGE,
    CancelCommand,
    ChangeCommand,
    Command,
    HelpCommand,
    ListCommand,
    StatusCommand,
    UsageError,
    _scan,
    _tokenize,
    _Usage,  # the tokenizer's two paths, compared, and its internal error
    parse_command,
)
from bot.domain.request import StopType

COMMANDS = get_args(Command)  # every answer the parser may give, the usage error included


def change(text: str) -> ChangeCommand:
    cmd = parse_command(text)
    assert isinstance(cmd, ChangeCommand), cmd
    return cmd


def usage(text: str) -> str:
    cmd = parse_command(text)
    assert isinstance(cmd, UsageError), cmd
    assert cmd.usage == USAGE
    return cmd.message


@pytest.mark.parametrize("text", ["", "   ", "\n\t", "help", "HELP", "?", "web-01 --help", "-h"])
def test_help(text):
    assert parse_command(text) == HelpCommand()


def test_server_only_leaves_the_rest_to_the_modal():
    assert change("web-01") == ChangeCommand(server="web-01")


def test_full_command():
    cmd = change(
        "web-01 ubuntu-22 --key ops-key --stop hard --reason disk full after upgrade --ticket INC-1 "
        "--notify <#C01CHAN001|ops> #incidents,#Web <@U01ABCDEF1> <#C01CHAN002> <#C01CHAN003|>"
    )
    assert cmd.server == "web-01" and cmd.image == "ubuntu-22"
    assert cmd.keyname == "ops-key" and not cmd.password
    assert cmd.stop is StopType.HARD
    assert cmd.reason == "disk full after upgrade"
    assert cmd.ticket == "INC-1"
    assert cmd.notify == ["C01CHAN001", "C01CHAN002", "C01CHAN003"]
    assert cmd.notify_names == ["incidents", "web"]


def test_flags_anywhere_and_case_insensitive():
    cmd = change("--STOP Soft web-01 --Key k1 ubuntu")
    assert (cmd.server, cmd.image, cmd.keyname, cmd.stop) == ("web-01", "ubuntu", "k1", StopType.SOFT)


def test_short_forms_and_explicit_server_image():
    cmd = change("-k mykey -s hard -r why -t T-1 -n #ops --server web-02 --image img-9")
    assert (cmd.keyname, cmd.stop, cmd.reason, cmd.ticket, cmd.notify_names) == ("mykey", "HARD", "why", "T-1", ["ops"])
    assert (cmd.server, cmd.image) == ("web-02", "img-9")
    assert change("web-01 -p").password


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('web-01 --reason "disk full"', "disk full"),
        ("web-01 --reason 'disk full'", "disk full"),
        ("web-01 --reason \u201cdisk full\u201d", "disk full"),
        ('web-01 --reason \u201cdisk full"', "disk full"),
        ("web-01 --reason \u2018disk full\u2019", "disk full"),
        ('web-01 --reason="disk full"', "disk full"),
        ("web-01 --reason=disk", "disk"),
        ("web-01 --reason don't panic", "don't panic"),
        ("web-01 --reason a &amp; b &lt;c&gt;", "a & b <c>"),
        ("web-01 --reason &amp;lt;", "&lt;"),
        ('web-01 --reason "--not a flag"', "--not a flag"),
        ("web-01 \u2014reason em dash from autocorrect", "em dash from autocorrect"),
        ("web-01 --reason see <https://x.example/t/1|ticket>", "see https://x.example/t/1"),
    ],
)
def test_reason_forms(text, reason):
    assert change(text).reason == reason


def test_quoted_image_with_spaces():
    assert change('web-01 "Ubuntu 22.04 server 64bit" --key k').image == "Ubuntu 22.04 server 64bit"
    assert change("web-01 \u201cUbuntu 22.04\u201d").image == "Ubuntu 22.04"


def test_blank_reason_becomes_none_for_the_modal_to_ask():
    assert change('web-01 --reason "  "').reason is None


def test_user_mentions_ignored_in_notify():
    cmd = change("web-01 --notify <@U01ABCDEF1> #ops @bob")
    assert cmd.notify == [] and cmd.notify_names == ["ops"]


def test_notify_stops_at_a_non_channel_word():
    cmd = change("--notify #ops web-01 ubuntu")
    assert (cmd.server, cmd.image, cmd.notify_names) == ("web-01", "ubuntu", ["ops"])


def test_notify_accepts_raw_ids_and_repeats():
    cmd = change("web-01 --notify C01CHAN001 --notify=#a,#b --notify #a")
    assert cmd.notify == ["C01CHAN001"] and cmd.notify_names == ["a", "b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('web-01 --reason "disk full', "never closed"),
        ("web-01 --reason \u201cdisk full", "never closed"),
        ("web-01 --kye k", "Did you mean --key?"),
        ("web-01 --resaon x", "Did you mean --reason?"),
        ("web-01 --zzzzzz", "Known options"),
        ("web-01 --key k --password", "not both"),
        ("web-01 --password -k k", "not both"),
        ("web-01 --stop medium", "--stop takes soft or hard"),
        ("web-01 --stop", "--stop needs a value"),
        ("web-01 --key", "--key needs a value"),
        ("web-01 --key --password", "--key needs a value"),
        ('web-01 --key ""', "--key needs a value"),
        ("web-01 --ticket", "--ticket needs a value"),
        ("web-01 --reason", "--reason needs"),
        ("web-01 --notify", "--notify needs"),
        ("web-01 --notify=nope", "--notify takes channels"),
        ("web-01 ubuntu extra", "Too many words"),
        ("--server a b c", "Too many words"),
        ("web-01 --key a --key b", "given twice"),
        ("web-01 -p --password", "given twice"),
        ("cancel", "needs the request ID"),
        ("cancel CR-1 CR-2", "one request ID"),
        ("cancel nonsense", "is not a request ID"),
        ("list all", "takes nothing"),
        ("status a b", "one request ID or one server"),
        ("<#C01CHAN001|ops>", "not a server"),
    ],
)
def test_usage_errors(text, expected):
    assert expected in usage(text)


def test_password_is_never_taken_as_a_value_nor_echoed():
    canary = "Canary-Pw-7781!"
    for text in (f"web-01 --password {canary}", f"web-01 --password={canary}", f"--password {canary} ubuntu"):
        msg = usage(text)
        assert "takes no value" in msg and canary not in msg


def test_subcommands():
    assert parse_command("list") == ListCommand()
    assert parse_command("LIST") == ListCommand()
    assert parse_command("status") == StatusCommand(None)
    assert parse_command("status cr-7kq2mx") == StatusCommand("CR-7KQ2MX")
    assert parse_command("status web-01") == StatusCommand("web-01")
    assert parse_command("cancel CR-7KQ2MX") == CancelCommand("CR-7KQ2MX")
    assert parse_command("cancel cr-7kq2mx") == CancelCommand("CR-7KQ2MX")
    assert parse_command("cancel 7KQ2MX") == CancelCommand("CR-7KQ2MX")


def test_quoted_verb_is_a_server_name():
    assert change('"list"').server == "list"


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_never_raises_on_any_text(text):
    cmd = parse_command(text)
    assert isinstance(cmd, COMMANDS)
    if isinstance(cmd, UsageError):
        assert cmd.message.strip() and cmd.usage == USAGE
        assert len(cmd.message) <= MAX_MESSAGE


_PIECES = st.sampled_from(
    [
        "web-01",
        "ubuntu",
        "--key",
        "-k",
        "--password",
        "-p",
        "--stop",
        "soft",
        "hard",
        "--reason",
        "--ticket",
        "--notify",
        "#ops",
        "<#C01CHAN001|ops>",
        "<#C01CHAN001>",
        "<@U01ABCDEF1>",
        '"',
        "'",
        "\u201c",
        "\u201d",
        "&amp;",
        "&lt;",
        "=",
        "--reason=",
        "status",
        "cancel",
        "list",
        "help",
        "CR-7KQ2MX",
        "\u2014key",
        "--x",
    ]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(_PIECES, max_size=10), st.sampled_from([" ", "", "  "]))
def test_never_raises_on_command_like_text(pieces, sep):
    cmd = parse_command(sep.join(pieces))
    assert isinstance(cmd, COMMANDS)
    if isinstance(cmd, UsageError):
        assert cmd.message.strip() and cmd.usage == USAGE
        assert len(cmd.message) <= MAX_MESSAGE


# ---------------------------------------------------------------------------------------------------- length caps


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s" * 65, "at most 64"),
        ("--server " + "s" * 65, "at most 64"),
        ("web-01 " + "i" * 129, "at most 128"),
        ("web-01 --key " + "k" * 65, "at most 64"),
        ("web-01 --reason " + "r" * 501, "at most 500"),
        ("web-01 --reason " + " ".join(["word"] * 200), "at most 500"),
        ("web-01 --ticket " + "t" * 101, "ticket ID"),
        ("web-01 --notify " + " ".join(f"#c{i}" for i in range(21)), "at most 20 channels"),
        ("status " + "s" * 65, "at most 64"),
        ("s" * (MAX_TEXT + 1), "at most 4000"),
        ("web-01 --reason " + "x" * 20_000, "at most 4000"),
    ],
)
def test_each_field_is_capped_with_a_message(text, expected):
    message = usage(text)
    assert expected in message and len(message) <= MAX_MESSAGE


def test_values_at_the_caps_are_accepted():
    cmd = change(f"{'s' * 64} {'i' * 128} --key {'k' * 64} --reason {'r' * 500} --ticket {'t' * 100}")
    assert (len(cmd.server), len(cmd.image), len(cmd.keyname), len(cmd.reason), len(cmd.ticket)) == (
        64,
        128,
        64,
        500,
        100,
    )


def test_too_many_words_names_a_few_and_counts_the_rest():
    message = usage(" ".join(f"w{i}" for i in range(800)))
    assert "got 800" in message and "“w0”" in message and "797 more" in message and "w799" not in message
    assert len(message) <= MAX_MESSAGE


def test_usage_has_no_slack_control_characters():
    assert not set("<>&") & set(USAGE)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["", "web-01 ", "--reason ", "web-01 --key ", "--ticket ", "status ", "cancel "]),
    st.text(min_size=0, max_size=30),
    st.integers(min_value=0, max_value=6000),
)
def test_messages_stay_short_whatever_the_length(prefix, piece, repeat):
    cmd = parse_command(prefix + (piece or "x") * (repeat // max(1, len(piece or "x"))))
    assert isinstance(cmd, COMMANDS)
    if isinstance(cmd, UsageError):
        assert 0 < len(cmd.message) <= MAX_MESSAGE


# ---------------------------------------------------------------------------------------------------- the quick path

_QUICK_PIECES = st.one_of(
    _PIECES,
    st.sampled_from(["'ack bench'", '"Ubuntu 22.04"', "''", "'a\u2019", '"b\u201d', "don't", "a'b'", "'x'y", "\u00a0"]),
    st.text(alphabet="ab -'\"\u2019\u201c\u201d<&=\t", max_size=6),
)


@settings(max_examples=1500, deadline=None)
@given(st.lists(_QUICK_PIECES, max_size=10), st.sampled_from([" ", "", "  ", "\t"]))
def test_the_quick_tokenizer_agrees_with_the_general_scan(pieces, sep):
    """The regex that splits the usual command before every ack takes only texts the general scan splits the same."""
    text = sep.join(pieces)
    try:
        scanned = _scan(text)
    except _Usage:
        assert not _QUICK_TEXT.fullmatch(text)  # an unclosed quote never takes the quick path
        return
    assert _tokenize(text) == scanned


def test_the_usual_command_takes_the_quick_path():
    text = "web-01 ubuntu-22.04 --key ops-key --reason 'ack bench' --ticket \"INC 1\""
    assert _QUICK_TEXT.fullmatch(text)
    assert [(t.text, t.quoted) for t in _tokenize(text)] == [
        ("web-01", False),
        ("ubuntu-22.04", False),
        ("--key", False),
        ("ops-key", False),
        ("--reason", False),
        ("ack bench", True),
        ("--ticket", False),
        ("INC 1", True),
    ]
