"""The fleet command grammar and wave specs: every selector, every bad input has a clear message."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.command import MAX_MESSAGE, ChangeCommand, HelpCommand, UsageError
from bot.domain.fleet_command import FLEET_USAGE, FleetCommand, FleetSelector, TagFilter, parse
from bot.domain.request import StopType
from bot.domain.waves import Wave, WaveError, cut, parse_waves, wave_sizes


def fleet(text: str) -> FleetCommand:
    cmd = parse(text)
    assert isinstance(cmd, FleetCommand), cmd
    return cmd


def usage(text: str) -> str:
    cmd = parse(text)
    assert isinstance(cmd, UsageError), cmd
    assert cmd.usage == FLEET_USAGE
    return cmd.message


@pytest.mark.parametrize(
    ("text", "selector"),
    [
        ("fleet web-01 web-02 --image u22", FleetSelector(names=("web-01", "web-02"))),
        ("fleet web-02,web-01 , web-02 --image u22", FleetSelector(names=("web-02", "web-01"))),
        (
            "fleet 7a9f4d3b-0000-4f00-8000-000000000001 --image u22",
            FleetSelector(names=("7a9f4d3b-0000-4f00-8000-000000000001",)),
        ),
        ("fleet web-* --image u22", FleetSelector(patterns=("web-*",))),
        ("fleet 'web-0[1-3]' api-? --image u22", FleetSelector(patterns=("web-0[1-3]", "api-?"))),
        ("fleet --tag role=web --image u22", FleetSelector(tags=(TagFilter("role", "web"),))),
        (
            "fleet --tag=role=web --tag env --image u22",
            FleetSelector(tags=(TagFilter("role", "web"), TagFilter("env"))),
        ),
        ("FLEET --tag role= --image u22", FleetSelector(tags=(TagFilter("role", ""),))),
    ],
)
def test_selectors(text: str, selector: FleetSelector) -> None:
    assert fleet(text).selector == selector


def test_full_fleet_command_and_defaults() -> None:
    cmd = fleet(
        "fleet web-* --image 'Ubuntu 22.04' --key ops-key --waves 2,25%,rest --max-failures 3 --parallel 10 "
        "--pause --stop hard --reason monthly patching --ticket CHG-1 --notify #ops"
    )
    assert cmd.image == "Ubuntu 22.04" and cmd.keyname == "ops-key" and not cmd.password
    assert cmd.waves == (Wave(count=2), Wave(percent=25), Wave())
    assert (cmd.max_failures, cmd.parallel, cmd.pause, cmd.stop) == (3, 10, True, StopType.HARD)
    assert (cmd.reason, cmd.ticket, cmd.notify_names) == ("monthly patching", "CHG-1", ["ops"])
    plain = fleet("fleet a --image x --password")
    assert plain.password and plain.waves == parse_waves("1,10%,rest")
    assert (plain.max_failures, plain.parallel, plain.pause) == (1, 5, False)


def test_other_commands_pass_through() -> None:
    assert parse("web-01 ubuntu") == ChangeCommand(server="web-01", image="ubuntu")
    assert parse("") == HelpCommand()
    assert parse("fleet --help") == HelpCommand()
    too_long = parse("fleet " + "x" * 4000)
    assert isinstance(too_long, UsageError) and "Slack sends at most 4000" in too_long.message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("fleet", "The fleet needs servers"),
        ("fleet --image u22", "The fleet needs servers"),
        ("fleet , --image u22", "The fleet needs servers"),
        ("fleet web-01", "A fleet needs the target image"),
        ("fleet web-* web-01 --image x", "Choose one way to select the fleet"),
        ("fleet --tag role=web web-01 --image x", "Choose one way to select the fleet"),
        ("fleet --tag role=web --tag role=db --image x", "Each tag key can be given once"),
        ("fleet --tag 'ro le=web' --image x", "is not a tag"),
        ("fleet --tag role=we/b --image x", "The tag value"),
        ("fleet --tag =web --image x", "is not a tag"),
        ("fleet --tag --image x", "--tag needs a value"),
        ("fleet a --image x --waves 0%", "0% has no servers"),
        ("fleet a --image x --waves 1,0,rest", "A wave of 0 servers"),
        ("fleet a --image x --waves 150%", "more than the whole fleet"),
        ("fleet a --image x --waves rest,1", "must be the last wave"),
        ("fleet a --image x --waves 1,ten", "is not a wave size"),
        ("fleet a --image x --waves ,", "at least one wave"),
        ("fleet a --image x --max-failures 0", "--max-failures takes a whole number from 1"),
        ("fleet a --image x --parallel 51", "--parallel takes a whole number from 1 to 50"),
        ("fleet a --image x --parallel -1", "--parallel takes a whole number from 1 to 50"),
        ("fleet a --image x --key k --password", "Choose one login method"),
        ("fleet a --image x --password hunter2", "--password takes no value"),
        ("fleet a --image x --password=hunter2", "never type a password"),
        ("fleet a --image x --pause --pause", "--pause is given twice"),
        ("fleet a --image x --image y", "--image is given twice"),
        ("fleet a --imgae x", "Did you mean --image?"),
        ("fleet a --image x --stop later", "--stop takes soft or hard"),
        ("fleet <#C01CHAN001|ops> --image x", "is a channel or a person"),
        ("fleet a --image x --notify nope!", "--notify needs"),
        ("fleet a --image 'x", "is never closed"),
        ("fleet " + "a" * 65 + " --image x", "too long"),
    ],
)
def test_bad_input_has_a_clear_message(text: str, says: str) -> None:
    assert says in usage(text)


def test_too_many_servers() -> None:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    names = ",".join([a + b for a in alphabet for b in alphabet][:1001])
    assert "at most 1000" in usage(f"fleet {names} --image x")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_parse_is_total_and_bounded(text: str) -> None:
    cmd = parse("fleet " + text)
    assert isinstance(cmd, FleetCommand | UsageError | HelpCommand)
    if isinstance(cmd, UsageError):
        assert len(cmd.message) <= MAX_MESSAGE


# --- waves ---


@pytest.mark.parametrize(
    ("spec", "n", "sizes"),
    [
        ("1,10%,rest", 12, [1, 2, 9]),
        ("1,10%,rest", 40, [1, 4, 35]),
        ("1,10%,rest", 500, [1, 50, 449]),
        ("1,10%,rest", 1, [1]),
        ("1,10%,rest", 2, [1, 1]),
        ("1,10%,rest", 3, [1, 1, 1]),
        ("rest", 7, [7]),
        ("100%", 7, [7]),
        ("50%,50%", 5, [3, 2]),
        ("1,2,rest", 3, [1, 2]),
        ("33.3%,rest", 3, [1, 2]),
        ("4,4,4", 12, [4, 4, 4]),
    ],
)
def test_wave_sizes(spec: str, n: int, sizes: list[int]) -> None:
    assert wave_sizes(parse_waves(spec), n) == sizes


@pytest.mark.parametrize(
    ("spec", "n", "says"),
    [
        ("5,rest", 3, "more servers than the fleet has"),
        ("1,3", 3, "wave 2 wants 3"),
        ("1,10%", 40, "leave 35 out"),
        ("rest", 0, "The fleet is empty"),
    ],
)
def test_wave_sizes_refused(spec: str, n: int, says: str) -> None:
    with pytest.raises(WaveError, match=says):
        wave_sizes(parse_waves(spec), n)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.integers(1, 5).map(str), st.integers(1, 100).map(lambda p: f"{p}%")), max_size=5),
    st.integers(1, 600),
)
def test_every_server_is_in_exactly_one_wave_canary_first(items: list[str], n: int) -> None:
    waves = parse_waves(",".join([*items, "rest"]))
    try:
        out = cut([f"s{i}" for i in range(n)], waves)
    except WaveError:
        return  # counts over the fleet size are refused, never silently shrunk
    assert [s for wave in out for s in wave] == [f"s{i}" for i in range(n)]
    assert all(out)
