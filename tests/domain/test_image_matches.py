"""Why no image is selected, as the plan card says it: none given, several match (named), or none matches."""

from __future__ import annotations

from bot.cloud import Image
from bot.domain.preflight import CheckLevel
from bot.planner import _no_image_check


def image(name: str) -> Image:
    return Image.model_validate({"id": f"id-{name}", "name": name, "status": "active"})


ALLOWED = [image("ubuntu-22.04"), image("ubuntu-24.04-cloudinit"), image("ubuntu-20.04"), image("windows-2022")]


def test_an_omitted_image_is_said_to_be_missing():
    check = _no_image_check(None, ALLOWED)
    assert check.level is CheckLevel.BLOCK and check.title == "No image chosen" and "named none" in check.detail


def test_several_matches_are_named():
    check = _no_image_check("Ubuntu", ALLOWED)
    assert check.title == "Several images match" and "matches 3 images" in check.detail
    assert all(name in check.detail for name in ("ubuntu-22.04", "ubuntu-24.04-cloudinit", "ubuntu-20.04"))


def test_one_partial_match_is_named_but_not_chosen():
    check = _no_image_check("windows", ALLOWED)
    assert check.level is CheckLevel.BLOCK and "windows-2022" in check.detail and "exactly" in check.detail


def test_no_match_and_many_matches_stay_short():
    assert _no_image_check("centos", ALLOWED).title == "Image not found"
    many = [image(f"ubuntu-{i}") for i in range(40)]
    detail = _no_image_check("ubuntu", many).detail
    assert "and 35 more" in detail and len(detail) < 300
