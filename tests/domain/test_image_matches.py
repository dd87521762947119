"""Why no image is selected, as the plan card says it, and the ephemeral that names the matches once."""

from __future__ import annotations

from bot.cloud import Image
from bot.domain.preflight import CheckLevel
from bot.services.imagematch import resolve
from bot.services.plan import image_reply, no_image_check


def image(name: str) -> Image:
    return Image.model_validate({"id": f"id-{name}", "name": name, "status": "active"})


ALLOWED = [image("ubuntu-22.04"), image("ubuntu-24.04-cloudinit"), image("ubuntu-20.04"), image("windows-2022")]


def test_an_omitted_image_is_said_to_be_missing():
    check = no_image_check(None)
    assert check.level is CheckLevel.BLOCK and check.title == "No image chosen" and "named none" in check.detail


def test_several_matches_are_counted_in_the_form_and_named_in_the_reply():
    found = resolve("Ubuntu", ALLOWED, ALLOWED)
    check = no_image_check(found)
    assert check.title == "Several images match" and "matches 3 images" in check.detail
    reply = image_reply(found) or ""
    assert all(name in reply and name not in check.detail for name in ("ubuntu-22.04", "ubuntu-20.04"))


def test_a_unique_prefix_selects_and_needs_no_reply():
    found = resolve("WIN", ALLOWED, ALLOWED)
    assert found.image is not None and found.image.name == "windows-2022" and image_reply(found) is None


def test_no_match_names_the_closest_and_many_matches_stay_short():
    found = resolve("ubuntu-22.4", ALLOWED, ALLOWED)
    check = no_image_check(found)
    assert check.title == "Image not found" and "ubuntu-22.04" in check.detail
    assert "ubuntu-22.04" in (image_reply(found) or "")
    many = [image(f"ubuntu-{i:02d}") for i in range(40)]
    reply = image_reply(resolve("ubuntu", many, many)) or ""
    assert "and 30 more" in reply and reply.count("•") == 10 and len(reply) < 1200
