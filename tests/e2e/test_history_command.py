"""`/changeos history` and `/changeos status CR-…` from anywhere, as Slack sends them: the answer is the command's
own HTTP answer, so it needs no channel membership (a direct message, a private channel the bot is not in)."""

from __future__ import annotations

import json

from sandbox.devtools.stack import OUTSIDER, REQUESTER, LocalStack
from tests.e2e.conftest import submit_plan

DIRECT_MESSAGE = "D01DIRECT01"
PRIVATE_CHANNEL = "G01PRIVATE1"


async def test_history_lists_the_latest_changes_with_their_people_and_images(stack: LocalStack) -> None:
    request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason history please")
    answer = (await stack.command("history", user=OUTSIDER, channel=DIRECT_MESSAGE)).json()
    assert answer["response_type"] == "ephemeral"
    shown = json.dumps(answer["blocks"], ensure_ascii=False)
    assert request.id in shown and "db-01" in shown and f"<@{REQUESTER}>" in shown
    assert "→ `ubuntu-22.04`" in shown and "⏳ Waiting for approval" in shown and "waiting for approval" in shown

    mine = (await stack.command("history --mine --since 1d", user=REQUESTER, channel=PRIVATE_CHANNEL)).json()
    assert request.id in json.dumps(mine["blocks"])
    theirs = (await stack.command("history db-01 --mine", user=OUTSIDER, channel=PRIVATE_CHANNEL)).json()
    assert "No changes of db-01 you asked for" in theirs["text"] and "blocks" not in theirs
    wrong = (await stack.command("history --since yesterday", user=OUTSIDER)).json()
    assert "--since takes an age such as 7d" in wrong["text"]


async def test_status_works_from_a_direct_message_and_says_when_a_request_is_unknown(stack: LocalStack) -> None:
    request = await submit_plan(stack, "db-01 ubuntu-22.04 --key ops-key --reason status anywhere")
    status = (await stack.command(f"status {request.id}", user=OUTSIDER, channel=DIRECT_MESSAGE)).json()
    assert status["response_type"] == "ephemeral" and "Audit trail" in status["text"]
    unknown = (await stack.command("status CR-ZZZZZZ", user=OUTSIDER, channel=DIRECT_MESSAGE)).json()
    assert "No change request CR-ZZZZZZ is known to the bot" in unknown["text"]
