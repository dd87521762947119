from dataclasses import replace

import pytest

from bot.domain.preflight import Check, CheckLevel, PlanFacts, blocking, preflight
from bot.domain.request import LoginMethod, StopType

OK, WARN, BLOCK = CheckLevel.OK, CheckLevel.WARN, CheckLevel.BLOCK


def good(**kw) -> PlanFacts:
    base = PlanFacts(
        server_status="SHUTOFF",
        task_state=None,
        system_disk_gb=40,
        server_os_type="Linux",
        image_found=True,
        image_name="ubuntu-22.04",
        image_status="active",
        image_min_disk=40,
        image_os_type="Linux",
        image_cloud_init=False,
        image_allowed=True,
        login=LoginMethod.KEYPAIR,
        keyname="ops-key",
        keypair_exists=True,
    )
    return replace(base, **kw)


def find(checks: list[Check], title_part: str) -> Check:
    matches = [c for c in checks if title_part.lower() in c.title.lower()]
    assert matches, [str(c) for c in checks]
    return matches[0]


def test_a_good_plan_has_no_blocks_or_warnings():
    checks = preflight(good())
    assert blocking(checks) == []
    assert all(c.level is OK for c in checks), [str(c) for c in checks]
    assert find(checks, "stopped").level is OK


@pytest.mark.parametrize(
    ("change", "title"),
    [
        ({"locked": True}, "locked"),
        ({"frozen": True}, "frozen"),
        ({"has_system_disk": False}, "No system disk"),
        ({"task_state": "rebooting"}, "Another operation"),
        ({"server_status": "ACTIVE", "stop_first": False}, "running"),
        ({"server_status": "REBOOT"}, "REBOOT"),
        ({"server_status": ""}, "unknown state"),
        ({"image_found": False}, "Image not found"),
        ({"image_status": "queued"}, "not active"),
        ({"image_min_disk": 100, "system_disk_gb": 40}, "too small"),
        ({"image_allowed": False}, "not allowed by policy"),
        ({"login": None}, "No login method"),
        ({"image_os_type": "Windows"}, "Key pair on Windows"),
        ({"keyname": None}, "No key pair"),
        ({"keypair_exists": False}, "Unknown key pair"),
        ({"login": LoginMethod.PASSWORD, "keyname": None, "password_set": False}, "Password not set"),
    ],
)
def test_each_blocking_check(change, title):
    checks = preflight(good(**change))
    check = find(checks, title)
    assert check.level is BLOCK and check.detail
    assert check in blocking(checks)


def test_task_state_detail_names_the_task():
    assert "rebooting" in find(preflight(good(task_state="rebooting")), "Another").detail


def test_active_with_stop_first_is_fine_and_names_the_stop_type():
    checks = preflight(good(server_status="ACTIVE", stop_first=True, stop_type=StopType.HARD))
    check = find(checks, "running")
    assert check.level is OK and "stopped first (HARD)" in check.detail
    assert blocking(checks) == []
    assert "stopped first (SOFT)" in find(preflight(good(server_status="ACTIVE", stop_first=True)), "running").detail


def test_active_without_stop_first_says_to_choose_it():
    assert "stop first" in find(preflight(good(server_status="ACTIVE")), "running").detail


def test_error_status_is_a_warning_only():
    checks = preflight(good(server_status="ERROR"))
    assert find(checks, "ERROR").level is WARN
    assert blocking(checks) == []


def test_unknown_disk_size_is_a_warning():
    checks = preflight(good(system_disk_gb=None))
    assert find(checks, "size unknown").level is WARN and blocking(checks) == []


def test_disk_sizes_in_detail():
    detail = find(preflight(good(image_min_disk=100, system_disk_gb=40)), "too small").detail
    assert "100 GB" in detail and "40 GB" in detail


def test_missing_image_skips_other_image_checks():
    checks = preflight(good(image_found=False, image_status=None, image_allowed=False))
    titles = [c.title for c in checks]
    assert "Image not found" in titles and "Image is not active" not in titles


def test_windows_target_is_warned_and_needs_a_password():
    checks = preflight(good(image_os_type="Windows", login=LoginMethod.PASSWORD, keyname=None, password_set=True))
    assert find(checks, "Windows target").level is WARN
    assert blocking(checks) == []


def test_cloud_init_api_choice_is_shown():
    assert "Cloud-Init API (v2)" in find(preflight(good(image_cloud_init=True)), "Cloud-Init image").detail
    assert "(v1)" in find(preflight(good(image_cloud_init=False)), "without Cloud-Init").detail


def test_unchecked_key_pair_is_a_warning():
    assert find(preflight(good(keypair_exists=None)), "not checked").level is WARN


def test_each_password_problem_blocks():
    problems = ["Too short.", "Needs digits."]
    checks = preflight(good(login=LoginMethod.PASSWORD, keyname=None, password_set=True, password_problems=problems))
    rejected = [c for c in checks if c.title == "Password rejected"]
    assert [c.detail for c in rejected] == problems
    assert all(c.level is BLOCK for c in rejected)


def test_password_ok():
    checks = preflight(good(login=LoginMethod.PASSWORD, keyname=None, password_set=True))
    assert find(checks, "password set").level is OK and blocking(checks) == []


def test_check_rendering():
    assert str(Check(BLOCK, "Server is locked", "Unlock it.")) == "⛔ Server is locked: Unlock it."
    assert OK.emoji == "✅" and WARN.emoji == "⚠️"
