from datetime import timedelta
from pathlib import Path

import pytest

from bot.domain.policy import Decision, Policy, PolicyError
from bot.domain.request import ChangeRequest, RequestState
from tests.support.requests import change_request

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "policy.example.toml"

GOOD = """
approvals_channel = "C01APPROVE1"
notify_channels = ["C01INCIDNT1"]
request_expiry_minutes = 30

[[rules]]
name = "web tier"
servers = ["web-*", "app-*", "4a7c0000-exact-id"]
tags = ["env=staging"]
requesters = ["U01REQ0001", "S01GRP0001"]
approvers = ["U01APR0001", "U01APR0002", "S01APRGRP1"]
approvals_required = 2
images = ["ubuntu-*", "img-exact-id"]
approvals_channel = "C01WEBAPPR1"
notify_channels = ["C01WEBNOTE1", "C01INCIDNT1"]

[[rules]]
name = "sandboxes"
servers = ["sandbox-*"]
tags = ["owner"]
requesters = ["U01DEV0001"]
self_service = true
images = ["*"]

[[rules]]
name = "catch-all db"
servers = ["db-*"]
requesters = ["U01REQ0001"]
approvers = ["U01APR0001"]
images = ["centos-*"]
"""


@pytest.fixture
def policy() -> Policy:
    return Policy.parse(GOOD, source="test.toml")


def request(**kw) -> ChangeRequest:
    return change_request(approvals_required=2, **kw)


# --- parsing ---------------------------------------------------------------------------------------------------------


def test_example_file_parses_without_warnings():
    p = Policy.load(EXAMPLE)
    assert p.rules and p.warnings() == []
    assert p.approvals_channel == "C01APPROVE1"
    assert p.expiry == timedelta(minutes=60)
    assert p.allow_password_in_modal is False


def test_good_policy(policy):
    assert [r.name for r in policy.rules] == ["web tier", "sandboxes", "catch-all db"]
    assert policy.expiry == timedelta(minutes=30)
    assert policy.rules[1].self_service
    assert policy.rules[0].approvals_required == 2


def test_load_missing_file(tmp_path):
    with pytest.raises(PolicyError, match=r"does not exist.*policy\.example\.toml"):
        Policy.load(tmp_path / "nope.toml")


def _err(text: str) -> str:
    with pytest.raises(PolicyError) as exc:
        Policy.parse(text, source="p.toml")
    msg = str(exc.value)
    assert msg.startswith("p.toml")
    return msg


RULE = '[[rules]]\nname = "r"\nservers = ["web-*"]\nrequesters = ["U01REQ0001"]\napprovers = ["U01APR0001"]\n'


def test_invalid_toml():
    assert "not valid TOML" in _err("approvals_channel = ")


def test_unknown_top_key_with_suggestion():
    msg = _err('approval_channel = "C01APPROVE1"\n')
    assert 'unknown key "approval_channel"' in msg and 'Did you mean "approvals_channel"' in msg


def test_unknown_rule_key_with_suggestion_and_location():
    msg = _err(RULE + "aprovers_required = 1\n")
    assert "rules[0] ('r')" in msg and '"aprovers_required"' in msg and "approvals_required" in msg


def test_unknown_key_without_close_match_lists_known_keys():
    msg = _err("zzz = 1\n")
    assert "Known keys" in msg and "notify_channels" in msg


def test_wrong_types():
    assert '"request_expiry_minutes" must be a whole number' in _err('request_expiry_minutes = "60"\n')
    assert '"allow_password_in_modal" must be true or false' in _err("allow_password_in_modal = 1\n")
    assert 'write servers = ["web-*"]' in _err(RULE.replace('servers = ["web-*"]', 'servers = "web-*"'))
    assert '"approvals_required" must be a whole number' in _err(RULE + "approvals_required = true\n")
    assert '"rules" must be written as [[rules]]' in _err('rules = "x"\n')


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('requesters = ["@alice"]', "not a Slack user or user-group ID. Use the member ID"),
        ('requesters = ["u01abc"]', "not a Slack user or user-group ID"),
        ('approvers = ["X01APR0001"]', "User IDs start with U or W"),
    ],
)
def test_bad_principal_ids(snippet, expected):
    key = snippet.split(" ")[0]
    text = "\n".join(line for line in RULE.splitlines() if not line.startswith(key)) + "\n" + snippet + "\n"
    assert expected in _err(text)


def test_bad_channel_ids():
    assert "is not a channel ID" in _err('approvals_channel = "#ops"\n')
    assert "is not a channel ID" in _err('notify_channels = ["C123"]\n')
    assert "rules[0]" in _err(RULE + 'approvals_channel = "general"\n')


def test_approvals_required_below_one():
    msg = _err(RULE + "approvals_required = 0\n")
    assert "must be 1 or more" in msg and "self_service" in msg


def test_self_service_with_approvals_required():
    msg = _err(RULE + "self_service = true\napprovals_required = 1\n")
    assert "self_service" in msg and "Remove one of the two" in msg


def test_approvals_required_above_listed_approvers():
    assert "only 1 approver" in _err(RULE + "approvals_required = 2\n")


def test_rule_without_approvers_is_an_error_unless_self_service():
    text = '[[rules]]\nname = "r"\nservers = ["x"]\nrequesters = ["U01REQ0001"]\nimages = ["*"]\n'
    assert 'no "approvers"' in _err(text)
    assert Policy.parse(text + "self_service = true\n").rules[0].self_service


def test_expiry_bounds():
    assert "between 1 and 10080" in _err("request_expiry_minutes = 0\n")


def test_no_rules_is_allowed_but_warned():
    p = Policy.parse("")
    assert p.rules == ()
    assert any("no [[rules]]" in w for w in p.warnings())
    assert not p.may_request("U01REQ0001", set(), "web-01", "srv-1").allowed


def test_other_warnings():
    p = Policy.parse('[[rules]]\nname = "r"\nservers = ["*"]\napprovers = ["U01APR0001"]\n' + RULE)
    w = " ".join(p.warnings())
    assert "no requesters" in w and "no images" in w and "never used" in w


# --- decisions -------------------------------------------------------------------------------------------------------


def test_rule_for_first_match_by_name_id_or_tag(policy):
    assert policy.rule_for("web-01", "x").name == "web tier"
    assert policy.rule_for("whatever", "4a7c0000-exact-id").name == "web tier"
    assert policy.rule_for("whatever", "x", ["env=staging"]).name == "web tier"
    assert policy.rule_for("whatever", "x", {"env": "staging"}).name == "web tier"
    assert policy.rule_for("whatever", "x", ["owner=bob"]).name == "sandboxes"  # bare key matches any value
    assert policy.rule_for("whatever", "x", ["env=prod"]) is None
    assert policy.rule_for("WEB-01", "x") is None  # case-sensitive, like ECS names
    assert policy.rule_for("db-1", "x").name == "catch-all db"


def test_deny_by_default(policy):
    d = policy.may_request("U01REQ0001", set(), "mail-01", "srv-9")
    assert isinstance(d, Decision) and not d and d.rule is None
    assert "No rule in the policy covers mail-01" in d.reason and "config/policy.toml" in d.reason


def test_may_request_user_and_group(policy):
    assert policy.may_request("U01REQ0001", set(), "web-01", "s").allowed
    d = policy.may_request("U01OTHER01", {"S01GRP0001"}, "web-01", "s")
    assert d.allowed and d.rule.name == "web tier" and "2 approvals" in d.reason
    d = policy.may_request("U01OTHER01", {"S01NOTHIS1"}, "web-01", "s")
    assert not d.allowed
    assert d.reason == (
        "You are not among the requesters for web-01 (rule 'web tier'). Ask an admin to add you to config/policy.toml."
    )


def test_self_service(policy):
    d = policy.may_request("U01DEV0001", set(), "sandbox-3", "s")
    assert d.allowed and "self-service" in d.reason
    assert policy.approvals_needed(d.rule) == 0
    assert policy.approvals_needed(policy.rules[0]) == 2


def test_may_approve(policy):
    r = request()
    assert policy.may_approve("U01APR0001", set(), r).allowed
    assert policy.may_approve("U01SOMEONE", {"S01APRGRP1"}, r).allowed
    d = policy.may_approve("U01SOMEONE", set(), r)
    assert not d.allowed and "not among the approvers for web-01" in d.reason


def test_self_approval_refused_even_for_an_approver(policy):
    r = request(requester="U01APR0001")
    d = policy.may_approve("U01APR0001", set(), r)
    assert not d.allowed and "nobody may approve their own request" in d.reason


def test_double_approval_refused(policy):
    r = request(approvals=["U01APR0001"])
    d = policy.may_approve("U01APR0001", set(), r)
    assert not d.allowed and "already approved" in d.reason
    assert policy.may_approve("U01APR0002", set(), r).allowed


def test_may_approve_only_while_pending(policy):
    r = request(state=RequestState.APPROVED)
    d = policy.may_approve("U01APR0001", set(), r)
    assert not d.allowed and "no longer waiting" in d.reason


def test_may_approve_when_no_rule_covers_the_server(policy):
    d = policy.may_approve("U01APR0001", set(), request(server_name="mail-01"))
    assert not d.allowed and "No rule" in d.reason


def test_image_patterns(policy):
    web, sandbox, db = policy.rules
    assert policy.image_allowed(web, "ubuntu-22.04", "i1")
    assert policy.image_allowed(web, "other", "img-exact-id")
    assert not policy.image_allowed(web, "centos-7", "i2")
    assert not policy.image_allowed(web, "Ubuntu-22.04", "i3")
    assert policy.image_allowed(sandbox, "anything at all", "i4")
    assert not policy.image_allowed(None, "ubuntu-22.04", "i1")
    allowed = policy.allowed_image_filter(db)
    assert allowed("centos-8", "x") and not allowed("ubuntu-22.04", "x")


def test_empty_images_allow_nothing():
    p = Policy.parse(RULE)
    assert not p.image_allowed(p.rules[0], "ubuntu", "i")


def test_channels_and_groups(policy):
    web, sandbox, _ = policy.rules
    assert policy.group_ids() == {"S01GRP0001", "S01APRGRP1"}
    assert policy.approvals_channel_for(web, "C01FALLBACK") == "C01WEBAPPR1"
    assert policy.approvals_channel_for(sandbox, "C01FALLBACK") == "C01APPROVE1"
    assert Policy.parse(RULE).approvals_channel_for(None, "C01FALLBACK") == "C01FALLBACK"
    assert policy.notify_channels_for(web) == ["C01INCIDNT1", "C01WEBNOTE1"]
    assert policy.notify_channels_for(None) == ["C01INCIDNT1"]


def test_can_anything(policy):
    assert policy.can_request_anything("U01REQ0001", set())
    assert policy.can_request_anything("U01X000001", {"S01GRP0001"})
    assert not policy.can_request_anything("U01APR0001", set())
    assert policy.can_approve_anything("U01APR0001", set())
    assert policy.can_approve_anything("U01X000001", {"S01APRGRP1"})
    assert not policy.can_approve_anything("U01REQ0001", set())


API_POLICY = """
[[rules]]
name = "legacy"
servers = ["*"]
requesters = ["U01REQ0001"]
approvers = ["U01APR0001"]
images = ["*"]
changeos_api = "v2"
changeos_api_images = { "centos-7*" = "v1", "img-auto-id" = "auto" }
"""


def test_changeos_api_follows_the_image_unless_the_policy_says_otherwise():
    auto = Policy.parse(GOOD)
    rule = auto.rule_for("web-01", "x")
    assert auto.changeos_api(rule, "ubuntu-22", "i1", cloud_init=True) == ("v2", "the image supports Cloud-Init")
    assert auto.changeos_api(rule, "ubuntu-22", "i1", cloud_init=False)[0] == "v1"
    policy = Policy.parse(API_POLICY)
    rule = policy.rule_for("web-01", "x")
    api, why = policy.changeos_api(rule, "ubuntu-22", "i1", cloud_init=False)
    assert api == "v2" and 'changeos_api = "v2"' in why
    api, why = policy.changeos_api(rule, "centos-7.9", "i2", cloud_init=True)
    assert api == "v1" and '"centos-7*"' in why
    assert policy.changeos_api(rule, "other", "img-auto-id", cloud_init=True)[0] == "v2"
    assert policy.changeos_api(rule, "other", "img-auto-id", cloud_init=False)[0] == "v1"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('changeos_api = "v3"', '"changeos_api" must be "auto", "v1" or "v2"'),
        ('changeos_api_images = { "x" = "v9" }', '"changeos_api_images" must be a table'),
        ('changeos_api_images = ["x"]', '"changeos_api_images" must be a table'),
    ],
)
def test_a_wrong_changeos_api_says_what_to_write(line: str, message: str):
    head = API_POLICY.split("changeos_api =")[0]
    text = head + line + "\n"
    with pytest.raises(PolicyError, match=message):
        Policy.parse(text)


def test_every_mistake_is_reported_at_once() -> None:
    text = (
        'approvals_chanel = "C01ABCDEFGH"\nnotify_channels = ["#ops"]\nrequest_expiry_minutes = 0\n'
        '[[rules]]\nname = "a"\nservers = ["*"]\napprovals_required = "two"\napprovers = ["U0REAL0001"]\n'
        '[[rules]]\nname = "b"\nserver = ["db-*"]\nimage = ["*"]\n'
        '[[rules]]\nname = "c"\nservers = ["ok-*"]\napprovers = ["U0REAL0001"]\n'
    )
    with pytest.raises(PolicyError) as info:
        Policy.parse(text, source="p.toml")
    problems = info.value.problems
    assert [p.split(": ", 2)[1] for p in problems] == [
        "top level",
        "top level",
        "top level",
        "rules[0] ('a')",
        "rules[1] ('b')",
        "rules[1] ('b')",
    ], problems
    assert 'Did you mean "servers"?' in problems[4] and 'Did you mean "images"?' in problems[5]
    assert str(info.value) == "\n".join(problems)


# --- backups and rollbacks -------------------------------------------------------------------------------------------


def test_backup_defaults_to_off_and_rollbacks_to_the_rule_approvals():
    rule = Policy.parse(RULE).rules[0]
    assert (rule.backup, rule.backup_keep_days, rule.backup_keep_count, rule.backup_restart_on_failure) == (
        "off",
        7,
        3,
        True,
    )
    assert Policy.parse(RULE).rollback_approvals_needed(rule) == 1


def test_backup_settings_and_a_lower_rollback_approval():
    text = RULE.replace('approvers = ["U01APR0001"]', 'approvers = ["U01APR0001", "U01APR0002"]') + (
        'approvals_required = 2\nbackup = "required"\nbackup_keep_days = 14\nbackup_keep_count = 5\n'
        "backup_restart_on_failure = false\nrollback_approvals_required = 1\n"
    )
    policy = Policy.parse(text)
    rule = policy.rules[0]
    assert (rule.backup, rule.backup_keep_days, rule.backup_keep_count) == ("required", 14, 5)
    assert rule.backup_restart_on_failure is False
    assert policy.approvals_needed(rule) == 2 and policy.rollback_approvals_needed(rule) == 1
    assert policy.backup_mode(rule) == "required" and policy.backup_mode(None) == "off"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('backup = "always"\n', '"backup" must be "required"'),
        ('backup = "offered"\nbackup_keep_days = 0\n', '"backup_keep_days" must be between 1 and 3650'),
        ('backup = "offered"\nbackup_keep_count = 51\n', '"backup_keep_count" must be between 1 and 50'),
        ("backup_keep_days = 3\n", 'no effect with backup = "off"'),
        ("rollback_approvals_required = 2\n", "between 1 and approvals_required (1)"),
        ("rollback_approvals_required = 0\n", "never more"),
        ('backup = true\n', '"backup" must be'),
    ],
)
def test_backup_mistakes_are_explained(extra, expected):
    msg = _err(RULE + extra)
    assert expected in msg and "rules[0] ('r')" in msg


def test_rollback_approvals_with_self_service_is_refused():
    text = '[[rules]]\nname = "r"\nservers = ["x"]\nrequesters = ["U01REQ0001"]\nself_service = true\n'
    assert "self_service" in _err(text + "rollback_approvals_required = 1\n")
