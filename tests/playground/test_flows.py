"""Every flow through the playground page, in a real browser: what a person sees is what the bot sent."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from sandbox.devtools.stack import APPROVALS_CHANNEL, INCIDENT_CHANNEL
from tests.support.waiting import until

from .conftest import CHROMIUM, WAIT_MS, Slack

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

pytestmark = [
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
    pytest.mark.asyncio(loop_scope="module"),
]

if Path(CHROMIUM).exists():
    from playwright.async_api import expect


async def modal_view(slack: Slack, key: str) -> str:
    """A field of the view the page shows, as the fake Slack stores it."""
    view_id = await slack.modal.get_attribute("data-view-id")
    return slack.pg.stack.slack.views[view_id or ""][key]


async def shoot(locator, name: str, tmp_path: Path) -> None:
    """A screenshot for the README: always taken (and checked), copied to docs/images with ECSBOT_UPDATE_SCREENSHOTS."""
    shot = tmp_path / name
    await locator.screenshot(path=str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("ECSBOT_UPDATE_SCREENSHOTS") or not (IMAGES / name).exists():
        IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, IMAGES / name)


async def test_a_full_change_through_the_page(slack: Slack, tmp_path: Path) -> None:
    page, modal = slack.page, slack.modal
    await slack.type("/changeos web-01")
    await expect(modal).to_be_visible()
    await expect(modal.locator("#modal-title")).to_have_text("Change OS")
    await expect(modal).to_contain_text("Pre-flight checks")  # the plan, after the cloud lookups
    await expect(modal).to_contain_text("web-01")

    image = modal.get_by_role("combobox", name="Target image")
    await image.click()
    await image.fill("ubuntu-22")
    await modal.get_by_role("option", name=re.compile(r"^ubuntu-22\.04 ")).click()
    await expect(modal.locator('[data-block-id="checks_b"]')).to_contain_text("Image fits the disk")
    await expect(image).to_have_value(re.compile(r"^ubuntu-22\.04 \(Linux\)"))
    await expect(modal.get_by_label("Key pair", exact=True)).to_have_value("ops-key")
    await modal.get_by_label("Reason", exact=True).fill("CVE-2026-1234 kernel fix")
    await modal.get_by_label("Ticket or incident").fill("INC-4242")
    await page.set_viewport_size({"width": 1200, "height": 1300})  # the whole modal in the picture
    await shoot(modal, "modal.png", tmp_path)
    await page.set_viewport_size({"width": 1200, "height": 900})
    await modal.get_by_role("button", name="Request approval").click()
    await expect(modal).to_be_hidden()
    await expect(slack.ephemerals()).to_contain_text(re.compile(r"CR-\w+ is waiting for approval in #ecs-approvals"))

    await slack.act_as("approver")
    await slack.open_channel(APPROVALS_CHANNEL)
    card = slack.message("Change OS request")
    await expect(card.locator(".block.header")).to_contain_text(re.compile(r"Change OS request CR-\w+"))
    await expect(card).to_contain_text("Requested by")
    await expect(card.locator(".mention", has_text="@alice").first).to_be_visible()
    await shoot(card, "approval.png", tmp_path)
    await card.get_by_role("button", name="Approve").click()
    dialog = page.locator("#confirm")
    await expect(dialog).to_contain_text("Approve this change?")
    await expect(dialog).to_contain_text("web-01 will get ubuntu-22.04")
    await dialog.get_by_role("button", name="Approve").click()

    thread = card.locator(".thread")
    await expect(thread).to_contain_text("✅ Succeeded: web-01 now runs ubuntu-22.04.", timeout=3 * WAIT_MS)
    await expect(card.locator(":scope > .msg-body > .content .block.context").last).to_contain_text(
        "👍 Approved by @bob. Progress in the thread below."
    )
    await expect(thread.locator(".msg").first).to_contain_text("✅ Succeeded")  # the status message, edited
    await expect(thread.locator(".msg").first.locator(".edited")).to_be_visible()
    await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    await shoot(card, "thread.png", tmp_path)

    await slack.open_channel(INCIDENT_CHANNEL)
    await expect(slack.message("now runs")).to_contain_text("web-01 now runs ubuntu-22.04")
    assert slack.pg.stack.slack.errors() == []
    assert slack.errors == []


async def test_a_password_change_through_the_page_and_the_one_time_page(slack: Slack) -> None:
    canary = "Canary-Pw#8d1f4Qx"
    page, modal = slack.page, slack.modal
    await slack.type('/changeos db-01 ubuntu-22.04 --password --reason "rotate the admin login"')
    await expect(modal).to_contain_text("The password never passes through Slack")
    link = modal.get_by_role("button", name="Set password securely")
    await expect(link).to_have_attribute("href", re.compile(re.escape(slack.pg.stack.url) + r"/password#"))

    async with page.context.expect_page() as opened:
        await link.click()
    tab = await opened.value
    await expect(tab.locator("#form")).to_be_visible(timeout=WAIT_MS)
    await tab.locator("#password").fill(canary)
    await tab.locator("#confirm").fill(canary)
    await tab.locator("#submit").click()
    await expect(tab.locator("#done")).to_contain_text("Password set ✓", timeout=WAIT_MS)
    await tab.close()

    await expect(modal).to_contain_text("Password set", timeout=WAIT_MS)  # the bot refreshed the open form
    await expect(modal.get_by_role("button", name="Change password")).to_be_visible()
    await modal.get_by_role("button", name="Request approval").click()
    await expect(modal).to_be_hidden()

    await slack.act_as("approver")
    await slack.open_channel(APPROVALS_CHANNEL)
    card = slack.message("Change OS request")
    await expect(card).to_contain_text("Admin password (set ✓)")
    await card.get_by_role("button", name="Approve").click()
    await page.locator("#confirm").get_by_role("button", name="Approve").click()
    await expect(card.locator(".thread")).to_contain_text("✅ Succeeded: db-01 now runs", timeout=3 * WAIT_MS)
    assert canary not in await page.content()
    assert canary.encode() not in slack.pg.stack.slack.raw_traffic()
    assert slack.errors == []


async def test_a_rejection(slack: Slack) -> None:
    modal = slack.modal
    await slack.type("/changeos web-01")  # first a form cancelled: Slack tells the bot (view_closed)
    await expect(modal).to_contain_text("Pre-flight checks")
    draft = json.loads(await modal_view(slack, "private_metadata"))["d"]
    await modal.get_by_role("button", name="Cancel").click()
    await expect(modal).to_be_hidden()
    ended = slack.pg.stack.rt.workflow.draft_ended
    await until(lambda: ended(draft), timeout=WAIT_MS / 1000, what="the bot to hear the form was closed")

    await slack.type('/changeos web-01 ubuntu-22.04 --key ops-key --reason "kernel fix"')
    await expect(modal).to_contain_text("Pre-flight checks")
    await modal.get_by_role("button", name="Request approval").click()
    await expect(modal).to_be_hidden()

    await slack.act_as("approver")
    await slack.open_channel(APPROVALS_CHANNEL)
    card = slack.message("Change OS request")
    await card.get_by_role("button", name="Reject").click()
    await expect(modal.locator("#modal-title")).to_have_text("Reject request")  # the approver's own modal
    await modal.get_by_label("Reason").fill("not during the release freeze")
    await modal.get_by_role("button", name="Reject").click()
    await expect(modal).to_be_hidden()
    await expect(card).to_contain_text("🚫 Rejected by @bob: not during the release freeze")
    await expect(card.get_by_role("button", name="Approve")).to_have_count(0)
    await expect(card.locator(".thread")).to_contain_text("@alice")

    await slack.act_as("requester")
    await slack.open_channel(APPROVALS_CHANNEL)
    await expect(slack.message("Change OS request")).to_contain_text("🚫 Rejected by @bob")
    assert slack.errors == []


async def test_an_outsider_is_refused(slack: Slack) -> None:
    page, modal = slack.page, slack.modal
    await slack.act_as("outsider")
    await slack.type("/changeos web-01")
    await expect(slack.ephemerals()).to_contain_text("You are not named in the bot's policy")
    await expect(modal).to_be_hidden()

    await slack.act_as("requester")
    await expect(slack.ephemerals()).to_have_count(0)  # the refusal was only for the outsider
    await slack.type('/changeos web-01 ubuntu-22.04 --key ops-key --reason "kernel fix"')
    await expect(modal).to_contain_text("Pre-flight checks")
    await modal.get_by_role("button", name="Request approval").click()
    await expect(modal).to_be_hidden()

    await slack.act_as("outsider")
    await slack.open_channel(APPROVALS_CHANNEL)
    card = slack.message("Change OS request")
    await card.get_by_role("button", name="Approve").click()
    await page.locator("#confirm").get_by_role("button", name="Approve").click()
    await expect(slack.ephemerals()).to_contain_text("⛔")
    await expect(card.get_by_role("button", name="Approve")).to_be_visible()  # still waiting
    await expect(card).to_contain_text("approvals 0/1")
    assert slack.errors == []


async def test_a_failed_job_switched_on_from_the_page(slack: Slack) -> None:
    page, modal = slack.page, slack.modal
    await page.get_by_role("button", name="Slow cloud").click()
    await expect(page.locator("#fault-status")).to_contain_text("+1200 ms per call")
    await page.get_by_role("button", name="Clear faults").click()
    await expect(page.locator("#fault-status")).to_have_text("No faults.")
    await page.get_by_role("button", name="Fail the next job").click()
    await expect(page.locator("#fault-status")).to_have_text("1 job(s) will fail")

    await slack.type('/changeos db-01 ubuntu-22.04 --key ops-key --reason "kernel fix"')
    await expect(modal).to_contain_text("Pre-flight checks")
    await modal.get_by_role("button", name="Request approval").click()
    await expect(modal).to_be_hidden()
    await slack.act_as("approver")
    await slack.open_channel(APPROVALS_CHANNEL)
    card = slack.message("Change OS request")
    await card.get_by_role("button", name="Approve").click()
    await page.locator("#confirm").get_by_role("button", name="Approve").click()
    await expect(card.locator(".thread")).to_contain_text("❌ Failed", timeout=3 * WAIT_MS)
    await expect(card.locator(".thread")).to_contain_text("Ecs.1002")
    await slack.open_channel(INCIDENT_CHANNEL)
    await expect(slack.message("failed")).to_contain_text("the OS change of db-01 failed")
    assert slack.errors == []
