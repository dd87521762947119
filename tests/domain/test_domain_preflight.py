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
    windows = good(image_os_type="Windows", image_cloud_init=True, login=LoginMethod.PASSWORD, keyname=None)
    checks = preflight(replace(windows, password_set=True))
    assert find(checks, "Windows target").level is WARN
    assert blocking(checks) == []


def test_windows_through_the_v1_api_is_refused_before_approval():
    checks = preflight(good(image_os_type="Windows", login=LoginMethod.PASSWORD, keyname=None, password_set=True))
    assert find(checks, "Windows through the v1 API").level is BLOCK


def test_cloud_init_api_choice_is_shown_with_its_reason():
    v2 = find(preflight(good(image_cloud_init=True)), "Cloud-Init API (v2)")
    assert "supports Cloud-Init" in v2.detail
    assert "__support_fc_inject" in find(preflight(good(image_cloud_init=False)), "(v1)").detail
    forced = preflight(good(image_cloud_init=True, changeos_api="v1", changeos_api_reason="policy rule x says v1"))
    assert "policy rule x says v1" in find(forced, "(v1)").detail


X86_XEN = {"flavor_id": "s1.large", "flavor_architecture": "x86", "flavor_virtualization": "Xen"}
X86_KVM = {"flavor_id": "c7.large.2", "flavor_architecture": "x86", "flavor_virtualization": "KVM"}
ARM_KVM = {"flavor_id": "kc1.large.2", "flavor_architecture": "arm", "flavor_virtualization": "KVM"}


@pytest.mark.parametrize(
    ("facts", "title"),
    [
        ({"image_kind": "Ironic", **X86_KVM}, "Not an ECS system-disk image"),
        ({"image_kind": "DataImage"}, "Not an ECS system-disk image"),
        ({"image_kind": "IsoImage"}, "Not an ECS system-disk image"),
        ({"image_architecture": "arm", "image_firmware": "uefi", **X86_KVM}, "Architecture differs"),
        ({"image_architecture": "x86", **ARM_KVM}, "Architecture differs"),
        ({"image_architecture": "arm", "image_firmware": "bios", **ARM_KVM}, "Boot firmware does not fit"),
        ({"image_support_xen": False, "image_support_kvm": True, **X86_XEN}, "does not support Xen"),
        ({"image_support_kvm": False, "image_support_xen": True, **X86_KVM}, "does not support KVM"),
        ({"image_min_disk": 80, "system_disk_gb": 40}, "System disk too small"),
        ({"image_status": "queued"}, "Image is not active"),
        ({"keypair_exists": False}, "Unknown key pair"),
    ],
)
def test_each_incompatibility_blocks_before_approval(facts: dict, title: str):
    check = find(preflight(good(**facts)), title)
    assert check.level is BLOCK and check.detail


@pytest.mark.parametrize(
    "facts",
    [
        {"image_kind": "FusionCompute", "image_architecture": "x86", "image_support_kvm": True, **X86_KVM},
        {"image_architecture": "arm", "image_firmware": "uefi", "image_support_kvm": True, **ARM_KVM},
        {"image_architecture": "x86", "image_support_xen": True, "image_support_kvm": False, **X86_XEN},
    ],
)
def test_a_fitting_image_passes_and_says_so(facts: dict):
    checks = preflight(good(**facts))
    assert blocking(checks) == []
    assert find(checks, "Image fits the flavor").level is OK


def test_an_unread_flavor_is_a_warning_not_a_guess():
    check = find(preflight(good(flavor_id="s1.large", image_architecture="arm")), "Flavor not read")
    assert check.level is WARN


def test_a_foreign_key_pair_says_key_pairs_belong_to_users():
    assert "belong to the user" in find(preflight(good(keypair_exists=False)), "Unknown key pair").detail


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
