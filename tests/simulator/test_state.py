"""The state machine without HTTP: the status table, seeded timing, speed, and the password rules."""

from __future__ import annotations

import random

import pytest

from sandbox.simulator import ManualClock
from sandbox.simulator.faults import FaultBook
from sandbox.simulator.fixtures import load_fixtures
from sandbox.simulator.passwords import password_problem
from sandbox.simulator.state import ChangeOs, SimState, status_for

from .conftest import DB_01, UBUNTU_22, USER, WEB_01


@pytest.mark.parametrize(
    ("vm_state", "task_state", "status"),
    [
        ("active", None, "ACTIVE"),
        ("active", "powering-off", "ACTIVE"),
        ("active", "rebuilding", "REBUILD"),
        ("active", "rebooting", "REBOOT"),
        ("active", "reboot_started_hard", "HARD_REBOOT"),
        ("active", "migrating", "MIGRATING"),
        ("stopped", None, "SHUTOFF"),
        ("stopped", "powering-on", "SHUTOFF"),
        ("stopped", "rebuild_spawning", "REBUILD"),
        ("stopped", "resize_prep", "RESIZE"),
        ("error", None, "ERROR"),
        ("error", "rebuilding", "REBUILD"),
        ("resized", None, "VERIFY_RESIZE"),
        ("resized", "resize_reverting", "REVERT_RESIZE"),
        ("building", "spawning", "BUILD"),
        ("deleted", None, "DELETED"),
        ("shelved_offloaded", None, "SHELVED_OFFLOADED"),
        ("stopped", "migrating", "UNKNOWN"),
    ],
)
def test_status_table(vm_state: str, task_state: str | None, status: str) -> None:
    assert status_for(vm_state, task_state) == status


def _state(seed: int = 5, speed: float = 1.0) -> tuple[SimState, ManualClock]:
    clock = ManualClock()
    state = SimState(load_fixtures(), clock, FaultBook(random.Random(0)), speed=speed, seed=seed)
    return state, clock


def _end_time(seed: int, speed: float) -> float:
    """Seconds until a change of db-01 ends, found by stepping the clock."""
    state, clock = _state(seed, speed)
    job_id = state.change_os(DB_01, ChangeOs(imageid=UBUNTU_22, keyname="ops-key", userid=USER), cloud_init=False)
    step = 0.25 / speed
    elapsed = 0.0
    while state.get_job(job_id).status != "SUCCESS":
        clock.advance(step)
        elapsed += step
        state.advance()
        assert elapsed < 400 / speed
    return elapsed


def test_change_takes_minutes_and_is_deterministic_per_seed() -> None:
    first = _end_time(seed=1, speed=1.0)
    assert 184 <= first <= 306
    assert _end_time(seed=1, speed=1.0) == first
    assert _end_time(seed=2, speed=1.0) != first


def test_speed_divides_every_duration() -> None:
    assert _end_time(seed=1, speed=10.0) == pytest.approx(_end_time(seed=1, speed=1.0) / 10, abs=0.05)


def test_init_lasts_seconds_then_running() -> None:
    state, clock = _state()
    job_id = state.change_os(DB_01, ChangeOs(imageid=UBUNTU_22, keyname="ops-key", userid=USER), cloud_init=False)
    clock.advance(3.9)
    state.advance()
    assert state.get_job(job_id).status == "INIT"
    clock.advance(2.2)
    state.advance()
    assert state.get_job(job_id).status == "RUNNING"


def test_stop_takes_20_to_40_seconds() -> None:
    state, clock = _state()
    job_id = state.stop_servers([WEB_01], hard=False)
    clock.advance(19.9)
    state.advance()
    assert state.get_job(job_id).status == "RUNNING" and state.servers[WEB_01].status == "ACTIVE"
    clock.advance(20.2)
    state.advance()
    assert state.get_job(job_id).status == "SUCCESS" and state.servers[WEB_01].status == "SHUTOFF"


def test_power_off_after_change_when_configured() -> None:
    fixtures = load_fixtures()
    settings = fixtures.simulator.model_copy(update={"power_on_after_change": False})
    clock = ManualClock()
    state = SimState(fixtures.model_copy(update={"simulator": settings}), clock, FaultBook(random.Random(0)))
    state.change_os(DB_01, ChangeOs(imageid=UBUNTU_22, keyname="ops-key", userid=USER), cloud_init=False)
    clock.advance(400)
    state.advance()
    assert state.servers[DB_01].status == "SHUTOFF" and state.servers[DB_01].image_id == UBUNTU_22


def test_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="speed"):
        _state(speed=0)


@pytest.mark.parametrize(
    ("password", "os_type", "ok"),
    [
        ("Blue-Kettle-42", "Linux", True),
        ("Blue-Kettle-42", "Windows", True),
        ("abcDEF12", "Linux", True),
        ("abcdefg1", "Linux", False),  # two classes
        ("Ab1!Ab1", "Linux", False),  # 7 characters
        ("Ab1!" * 6 + "xyz", "Linux", False),  # 27 characters
        ("Abc 123!x", "Linux", False),  # space is not allowed
        ("Pass~word#1", "Linux", True),
        ("MyAdministrator1", "Windows", False),
        ("MyAdministrator1", "Linux", True),
        ("Rotartsinimda9!", "Windows", False),
        ("Strong-Pass-1", "Windows", False),  # "str" is three consecutive characters of Administrator
    ],
)
def test_password_rules(password: str, os_type: str, ok: bool) -> None:
    problem = password_problem(password, os_type)
    assert (problem is None) == ok
    if problem:
        assert password not in problem
