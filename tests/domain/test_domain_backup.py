"""Backup names, tags, retention and the quota check: pure functions, no cloud."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.domain.backup import BackupImage, image_description, image_name, image_tags, quota_check, to_prune

NOW = datetime(2026, 12, 2, 12, 0, 5, tzinfo=UTC)
IMS_NAME = re.compile(r"^[A-Za-z0-9\-._ ]{1,128}$")


def test_name_is_readable_and_has_no_colon():
    assert image_name("web-01", "CR-ABC234", NOW) == "ecsbot-web-01-CR-ABC234-20261202T120005Z"


@given(st.text(max_size=300))
def test_any_server_name_gives_a_name_ims_accepts(server: str):
    name = image_name(server, "CR-ABC234", NOW)
    assert IMS_NAME.match(name) and name.endswith("-CR-ABC234-20261202T120005Z") and ":" not in name


def test_tags_fit_ims_limits_and_link_request_and_server():
    tags = image_tags("CR-ABC234", "7a9f4d3b-0000-4f00-8000-000000000002", NOW)
    assert tags == {
        "ecsbot": "backup",
        "ecsbot-request": "CR-ABC234",
        "ecsbot-server": "7a9f4d3b-0000-4f00-8000-000000000002",
        "ecsbot-time": "20261202T120005Z",
    }
    assert all(len(k) <= 36 and len(v) <= 43 for k, v in tags.items()) and len(tags) <= 10
    assert "CR-ABC234" in image_description("CR-ABC234", "web-01")


def _image(n: int, server: str = "srv-1", days: float = 0, status: str = "active", ours: bool = True) -> BackupImage:
    tags = {"ecsbot": "backup", "ecsbot-request": f"CR-{n:06d}", "ecsbot-server": server} if ours else {"x": "y"}
    return BackupImage(f"img-{n}", f"name-{n}", status, NOW - timedelta(days=days), tags)


def _ids(images: list[BackupImage], **kw: object) -> list[str]:
    return sorted(p.image.id for p in to_prune(images, now=NOW, **kw))  # type: ignore[arg-type]


def test_keep_count_per_server_and_keep_days():
    images = [_image(1, days=1), _image(2, days=2), _image(3, days=3), _image(4, days=10), _image(5, "srv-2", 1)]
    assert _ids(images, keep_days=30, keep_count=2) == ["img-3", "img-4"]
    assert _ids(images, keep_days=5, keep_count=3) == ["img-4"]


def test_never_an_image_the_bot_did_not_make_nor_one_being_created():
    images = [_image(1, days=100, ours=False), _image(2, days=100, status="saving"), _image(3, days=100)]
    assert _ids(images, keep_days=1, keep_count=1) == ["img-3"]


def test_never_the_latest_backup_of_a_server_whose_last_change_failed():
    images = [_image(1, days=100), _image(2, days=200), _image(3, "srv-2", days=100)]
    assert _ids(images, keep_days=1, keep_count=1, failed_servers={"srv-1"}) == ["img-2", "img-3"]


def test_killed_backups_always_go():
    images = [_image(1, days=0, status="killed"), _image(2, days=0)]
    (pruned,) = to_prune(images, keep_days=7, keep_count=3, now=NOW)
    assert pruned.image.id == "img-1" and "failed" in pruned.why


def test_retention_bounds():
    with pytest.raises(ValueError):
        to_prune([], keep_days=0, keep_count=1, now=NOW)


def test_quota_check_in_words():
    fits = quota_check(49, 50)
    assert fits.fits and fits.text == "backup needs 1 private image, 49 of 50 used"
    full = quota_check(50, 50)
    assert not full.fits and "50 of 50 used" in full.text and "ecsbot backups prune" in full.text
