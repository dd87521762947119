"""Pure parts of the playground: who plays whom for a policy, and what Slack does to a typed command."""

from __future__ import annotations

from bot.domain.policy import Policy
from sandbox.devtools.stack import DEFAULT_POLICY
from sandbox.playground.cast import GROUP_APPROVER, GROUP_REQUESTER, OUTSIDER, cast_for
from sandbox.playground.composer import escape_command_text, parse_command_line

CHANNELS = {"incident-42": "C01INCIDNT1", "ecs-approvals": "C01APPROVE1"}
PEOPLE = {"bob": "U01APR0001"}


def test_known_channels_people_and_urls_become_slack_entities() -> None:
    text = 'web-01 --notify #incident-42 #nowhere --reason "ask @bob & @nobody <now>: https://x.io/a?b=1&c=2"'
    assert escape_command_text(text, CHANNELS, PEOPLE) == (
        'web-01 --notify <#C01INCIDNT1|incident-42> #nowhere --reason "ask <@U01APR0001> &amp; @nobody '
        '&lt;now&gt;: <https://x.io/a?b=1&amp;c=2>"'
    )


def test_names_inside_words_stay_text() -> None:
    assert escape_command_text("mail bob@example.com a#b", CHANNELS, PEOPLE) == "mail bob@example.com a#b"


def test_only_slash_commands_are_commands() -> None:
    assert parse_command_line("  /changeos  web-01 ubuntu ") == ("/changeos", "web-01 ubuntu")
    assert parse_command_line("/changeos") == ("/changeos", "")
    assert parse_command_line("hello /changeos") is None


def test_the_default_policy_casts_the_stack_users_and_channels() -> None:
    cast = cast_for(Policy.parse(DEFAULT_POLICY))
    assert [(p.role, p.id, p.name) for p in cast.people] == [
        ("requester", "U01REQ0001", "alice"),
        ("approver", "U01APR0001", "bob"),
        ("outsider", OUTSIDER, "oscar"),
    ]
    assert [(c.role, c.id) for c in cast.channels] == [
        ("origin", "C01CHAN001"),
        ("approvals", "C01APPROVE1"),
        ("notify", "C01INCIDNT1"),
    ]
    assert cast.groups == {"S01OPS0001": [GROUP_APPROVER]}


def test_a_policy_naming_only_groups_gets_group_members() -> None:
    policy = Policy.parse(
        """
approvals_channel = "C0APPROVALS"
[[rules]]
name = "all"
servers = ["*"]
requesters = ["S0DEVS0001"]
approvers = ["S0OPS00001"]
images = ["*"]
notify_channels = ["C0NOTIFY01"]
"""
    )
    cast = cast_for(policy)
    assert [p.id for p in cast.people] == [GROUP_REQUESTER, GROUP_APPROVER, OUTSIDER]
    assert cast.groups == {"S0DEVS0001": [GROUP_REQUESTER], "S0OPS00001": [GROUP_APPROVER]}
    assert [(c.role, c.id) for c in cast.channels] == [
        ("origin", "C01CHAN001"),
        ("approvals", "C0APPROVALS"),
        ("notify", "C0NOTIFY01"),
    ]
