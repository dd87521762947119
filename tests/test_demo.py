"""`ecsbot demo` end to end: the transcript shows what a person in Slack would see, on every path."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.devtools import demo
from sandbox.devtools.demo import FAIL_CODE, FAIL_REASON, MASK, Style, mrkdwn, run_demo

FAST = 1000.0  # simulator speed for tests: the OS change takes a fraction of a second
STEADY = 100.0  # slow enough that every state lasts longer than the bot's pacing of Slack edits (about 1 s)
CANARY_PASSWORD = "Canary-Pw-7x!Q2"
ANSI = re.compile(r"\x1b\[")


async def _run(speed: float = FAST, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    code = await run_demo(color=False, out=out, speed=speed, **kwargs)
    return code, out.getvalue()


def _shows_progress(text: str) -> None:
    """The status message moved through the running state, and the thread said so."""
    assert re.search(r"✎ status message edited:\n.*\n\s+🔄 Changing the OS", text), text
    assert "» thread  🔄 Changing the OS" in text


def _common(text: str) -> None:
    """What every successful or explained run shows, in the order a person sees it."""
    expected_in_order = [
        "#change-requests · @alice  /changeos web-01 ubuntu-22.04",
        "Pre-flight checks",
        "✅ Image fits the disk",
        "[ Request approval ]",
        "#ecs-approvals  approval card:",
        "CHANGE OS REQUEST CR-",
        "Requested by: @alice",
        "[ Approve ]  [ Reject ]  [ Cancel ]",
        "(only @alice sees this)",
        "@bob clicks [ Approve ]",
        "status message:",
        "⏹️ Stopping the server",
        "✎ status message edited:",
    ]
    position = 0
    for needle in expected_in_order:
        found = text.find(needle, position)
        assert found >= 0, f"{needle!r} missing (or out of order) in:\n{text}"
        position = found
    assert re.search(r"Fingerprint [0-9a-f]{4}-[0-9a-f]{4} · approvals 0/1", text), text
    assert "#incident-42  🔄" in text and "changing the OS of web-01" in text
    assert "Notify: #incident-42" in text
    assert text.find("Approved by @bob") > text.find("@bob clicks [ Approve ]")  # the card edit lands alongside
    assert "<@" not in text and "<#" not in text and "<!date" not in text  # mrkdwn was rendered for people
    assert not ANSI.search(text)
    assert "Audit trail of CR-" in text


async def test_keypair_demo_shows_the_whole_flow_and_succeeds() -> None:
    code, text = await _run(STEADY)
    assert code == 0, text
    _common(text)
    _shows_progress(text)
    assert "Key pair: [ ops-key ▾ ]" in text
    assert "✅ Succeeded: web-01 now runs ubuntu-22.04. @alice @bob" in text
    assert "#incident-42  ✅" in text and "now runs ubuntu-22.04" in text
    assert re.search(r"Result  ✅ Succeeded · CR-\w+", text)
    assert re.search(r"bot\s+succeeded\s+running → succeeded", text)
    assert "✓ demo done" in text


async def test_password_demo_masks_the_password() -> None:
    code, text = await _run(STEADY, password=True, admin_password=CANARY_PASSWORD)
    assert code == 0, text
    _common(text)
    _shows_progress(text)
    assert "@alice chooses “Admin password”" in text
    assert "(•) Admin password" in text
    assert f"types the admin password twice ({MASK})" in text
    assert "Login: Admin password (set ✓)" in text
    assert "✅ Succeeded" in text
    assert CANARY_PASSWORD not in text
    assert "••••" in text


async def test_fail_demo_shows_the_clouds_reason_and_exits_zero() -> None:
    code, text = await _run(fail=True)
    assert code == 0, text
    _common(text)
    assert re.search(r"✎ status message edited:\n.*\n\s+❌ Failed", text), text
    assert f"({FAIL_CODE}): {FAIL_REASON}" in text
    assert re.search(r"#incident-42  ❌ CR-\w+: the OS change of web-01 failed: .*Ecs\.1002", text)
    assert re.search(r"Result  ❌ Failed · CR-\w+", text)
    assert "the cloud failed the job and the bot said why" in text


async def test_an_unexpected_outcome_exits_one_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "DEADLINE", 0.3)  # far too short for the job: the run cannot do what it promised
    code, text = await _run()
    assert code == 1
    assert "✗ " in text and "Traceback" not in text


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert demo._use_color(True, Tty())
    assert not demo._use_color(False, Tty())
    assert not demo._use_color(True, io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not demo._use_color(True, Tty())


def test_mrkdwn_rendering() -> None:
    plain = Style(color=False)
    text = "*CR-1*: <@U01APR0001> in <#C01INCIDNT1> and <#C09|ops>, <!date^1700000000^{date}|2023-11-14 22:13 UTC> `x`"
    assert mrkdwn(text, plain) == "CR-1: @bob in #incident-42 and #ops, 2023-11-14 22:13 UTC x"
    assert mrkdwn("*bold*", Style(color=True)) == "\x1b[1mbold\x1b[0m"
    assert mrkdwn("a &lt;b&gt; &amp; c :rocket:", plain) == "a <b> & c :rocket:"


def test_ecsbot_demo_command_exits_zero_quickly_and_leaves_nothing(tmp_path: Path) -> None:
    ecsbot = Path(sys.executable).parent / "ecsbot"
    assert ecsbot.exists(), f"console script missing at {ecsbot}: reinstall the package (pip install -e .)"
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    done = subprocess.run(
        [str(ecsbot), "demo", "--no-color", "--speed", str(FAST)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "✓ demo done" in done.stdout
    assert not ANSI.search(done.stdout)
    assert list(tmp_path.iterdir()) == []  # no database, no temporary folder left behind


@pytest.mark.parametrize(
    ("password", "fail", "suggested"),
    [
        (False, False, ["ecsbot demo --password", "ecsbot demo --fail"]),
        (True, False, ["ecsbot demo", "ecsbot demo --fail"]),
        (False, True, ["ecsbot demo", "ecsbot demo --password"]),
    ],
)
def test_the_next_hint_suggests_only_what_was_not_just_run(password: bool, fail: bool, suggested: list[str]) -> None:
    from sandbox.devtools.demo import next_hint

    hint = next_hint(password=password, fail=fail)
    assert hint.startswith("Next: " + " and ".join(f"`{c}`" for c in suggested) + ".")


async def test_rollback_demo_takes_a_backup_and_rolls_back_to_it() -> None:
    code, text = await _run(rollback=True)
    assert code == 0, text
    assert "💾 Backing up the system disk" in text
    assert "[ Roll back to ecsbot-web-01-" in text
    assert "rollback_of  rolls back" in text


async def test_fleet_demo_changes_3_servers_in_2_waves_under_one_message() -> None:
    out = io.StringIO()
    code = await demo.run_fleet_demo(color=False, out=out, speed=FAST)
    text = out.getvalue()
    assert code == 0, text
    expected_in_order = [
        "/changeos fleet web-0[1-3]",
        "Servers: 3 resolved",
        "Waves: 1 → 2 (canary first)",
        "[ Request 3 changes ]",
        "FLEET OS CHANGE FL-",
        "@bob clicks [ Approve ] on FL-",
        "#incident-42  🔄 Fleet FL-",
        "#incident-42  ✅ Done fleet FL-",
    ]
    position = 0
    for needle in expected_in_order:
        found = text.find(needle, position)
        assert found >= 0, f"{needle!r} missing (or out of order) in:\n{text}"
        position = found
    assert "3 changed, 0 failed" in text and "changed 3 servers in 2 waves" in text
    assert "<@" not in text and not ANSI.search(text)
