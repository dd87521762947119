"""Who may request and approve which OS changes: a TOML file, deny by default.

Nothing is allowed unless a rule says so. Every refusal is a sentence the person can act on, and every mistake in the
file is reported with where it is and what to write instead, because admins edit this file by hand.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from bot.domain.backup import BACKUP_MODES, BackupMode
from bot.domain.request import ChangeRequest, RequestState

USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
GROUP_ID = re.compile(r"^S[A-Z0-9]{2,}$")
CHANNEL_ID = re.compile(r"^[CG][A-Z0-9]{8,}$")

POLICY_HINT = "config/policy.toml"
_T = TypeVar("_T")


class PolicyError(ValueError):
    """The policy file is wrong; each problem says where and how to fix it (one line each in the message)."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Rule:
    name: str
    servers: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    requesters: frozenset[str] = frozenset()
    approvers: frozenset[str] = frozenset()
    approvals_required: int = 1
    self_service: bool = False
    images: tuple[str, ...] = ()
    approvals_channel: str | None = None
    notify_channels: tuple[str, ...] = ()
    changeos_api: str = "auto"  # "auto" (from the image's __support_fc_inject), "v1" or "v2"
    changeos_api_images: tuple[tuple[str, str], ...] = ()  # (image name pattern or ID, "auto"|"v1"|"v2"), first wins
    backup: BackupMode = "off"  # an image of the system disk before the change: required, offered (on) or off
    backup_keep_days: int = 7
    backup_keep_count: int = 3  # per server
    backup_restart_on_failure: bool = True  # start the server again if the backup fails and the bot stopped it
    rollback_approvals_required: int | None = None  # None: as approvals_required

    def matches_server(self, server_name: str, server_id: str, tags: Iterable[str] | Mapping[str, str] = ()) -> bool:
        for pattern in self.servers:
            if pattern == server_id or (server_name and fnmatchcase(server_name, pattern)):
                return True
        server_tags = _normalise_tags(tags)
        return any(_tag_matches(tag, pattern) for pattern in self.tags for tag in server_tags)


def _named(user_id: str, groups: set[str], members: frozenset[str]) -> bool:
    """True when the user, or one of the user groups they belong to, is listed."""
    return user_id in members or not members.isdisjoint(groups)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    rule: Rule | None = None

    def __bool__(self) -> bool:
        return self.allowed


def _normalise_tags(tags: Iterable[str] | Mapping[str, str]) -> list[str]:
    """ECS returns tags as "key=value" strings; callers holding a dict are accepted too."""
    if isinstance(tags, Mapping):
        return [f"{k}={v}" for k, v in tags.items()]
    return [str(t) for t in tags]


def _tag_matches(tag: str, pattern: str) -> bool:
    if "=" not in pattern:  # a bare key matches any value
        return tag.split("=", 1)[0] == pattern
    return fnmatchcase(tag, pattern)


# ---------------------------------------------------------------------------------------------------------------------
# Parsing


_TOP_KEYS = {
    "approvals_channel": "a channel ID",
    "notify_channels": "a list of channel IDs",
    "request_expiry_minutes": "a whole number of minutes",
    "allow_password_in_modal": "true or false",
    "max_fleet_size": "a whole number of servers, 1 or more",
    "rules": "a list of [[rules]] tables",
}
_RULE_KEYS = {
    "name": "a text",
    "servers": "a list of server name patterns or server IDs",
    "tags": 'a list of server tags like "env=staging"',
    "requesters": "a list of Slack user or user-group IDs",
    "approvers": "a list of Slack user or user-group IDs",
    "approvals_required": "a whole number, 1 or more",
    "self_service": "true or false",
    "images": 'a list of image name patterns or image IDs ("*" for all)',
    "approvals_channel": "a channel ID",
    "notify_channels": "a list of channel IDs",
    "changeos_api": '"auto", "v1" or "v2"',
    "changeos_api_images": 'a table of image name patterns or IDs to "auto", "v1" or "v2"',
    "backup": '"required", "offered" or "off"',
    "backup_keep_days": "a whole number of days, 1 to 3650",
    "backup_keep_count": "a whole number of backups per server, 1 to 50",
    "backup_restart_on_failure": "true or false",
    "rollback_approvals_required": "a whole number, 1 or more, at most approvals_required",
}
CHANGEOS_APIS = ("auto", "v1", "v2")


class _Reader:
    """Checks one table's keys and types, naming the place of every mistake."""

    def __init__(self, source: str, where: str, table: Mapping[str, Any], known: Mapping[str, str]) -> None:
        self.source, self.where, self.table, self.known = source, where, table, known
        self.problems: list[str] = []  # every unknown key, so one run of `ecsbot check` names them all
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
                hint = f' Did you mean "{close[0]}"?' if close else f" Known keys: {', '.join(sorted(known))}."
                self.problems.append(f'{source}: {where}: unknown key "{key}".{hint}')

    def fail(self, message: str) -> NoReturn:
        raise PolicyError(f"{self.source}: {self.where}: {message}")

    def _wrong_type(self, key: str, value: Any) -> NoReturn:
        self.fail(f'"{key}" must be {self.known[key]}, not {_describe(value)}.')

    def string(self, key: str, default: str | None = None) -> str | None:
        value = self.table.get(key, default)
        if value is not None and not isinstance(value, str):
            self._wrong_type(key, value)
        return value.strip() if isinstance(value, str) else value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.table.get(key, default)
        if not isinstance(value, bool):
            self._wrong_type(key, value)
        return value

    def integer(self, key: str, default: int) -> int:
        value = self.table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            self._wrong_type(key, value)
        return value

    def strings(self, key: str) -> list[str]:
        value = self.table.get(key, [])
        if isinstance(value, str):
            self.fail(f'"{key}" must be a list: write {key} = ["{value}"].')
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self._wrong_type(key, value)
        return [v.strip() for v in value]

    def channel(self, key: str) -> str | None:
        value = self.string(key)
        if value is not None:
            self._check_channel(key, value)
        return value

    def channels(self, key: str) -> list[str]:
        values = self.strings(key)
        for value in values:
            self._check_channel(key, value)
        return values

    def _check_channel(self, key: str, value: str) -> None:
        if not CHANNEL_ID.match(value):
            names = " Channel names are not accepted: they change, IDs do not." if value.startswith("#") else ""
            self.fail(
                f'"{key}": "{value}" is not a channel ID. Channel IDs look like C01ABCDEF23 (open the channel, '
                f"click its name, and copy the ID at the bottom of the About tab).{names}"
            )

    def principals(self, key: str) -> list[str]:
        values = self.strings(key)
        for value in values:
            if USER_ID.match(value) or GROUP_ID.match(value):
                continue
            if value.startswith(("@", "#")) or not value.isupper():
                hint = (
                    "Use the member ID (profile → ⋮ → Copy member ID), which looks like U01ABCDE23, "
                    "or a user-group ID, which looks like S01ABCDE23."
                )
            else:
                hint = "User IDs start with U or W (U01ABCDE23); user-group IDs start with S (S01ABCDE23)."
            self.fail(f'"{key}": "{value}" is not a Slack user or user-group ID. {hint}')
        return values


def _describe(value: Any) -> str:
    kind = {
        bool: "true/false",
        int: "a number",
        float: "a number",
        str: "a text",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    return f"{kind} ({value!r})" if not isinstance(value, dict | list) else kind


def _max_fleet(r: _Reader) -> int:
    size = r.integer("max_fleet_size", 100)
    if not 1 <= size <= 1000:
        r.fail(f'"max_fleet_size" must be between 1 and 1000 servers; got {size}.')
    return size


def _expiry(r: _Reader) -> int:
    expiry = r.integer("request_expiry_minutes", 60)
    if not 1 <= expiry <= 7 * 24 * 60:
        r.fail(f'"request_expiry_minutes" must be between 1 and 10080 (a week); got {expiry}.')
    return expiry


def _parse_rule(source: str, index: int, table: Any) -> Rule:
    where = f"rules[{index}]"
    if not isinstance(table, dict):
        raise PolicyError(f"{source}: {where}: each rule must be a [[rules]] table, not {_describe(table)}.")
    name_hint = table.get("name")
    if isinstance(name_hint, str) and name_hint.strip():
        where = f"rules[{index}] ('{name_hint.strip()}')"
    r = _Reader(source, where, table, _RULE_KEYS)
    if r.problems:
        raise PolicyError(*r.problems)
    name = r.string("name") or f"rule {index + 1}"
    servers = r.strings("servers")
    tags = r.strings("tags")
    requesters = r.principals("requesters")
    approvers = r.principals("approvers")
    self_service = r.boolean("self_service", False)
    if self_service and "approvals_required" in table:
        r.fail(
            '"self_service = true" means no approval is needed, so "approvals_required" makes no sense here. '
            "Remove one of the two."
        )
    approvals_required = r.integer("approvals_required", 1)
    if approvals_required < 1:
        r.fail(
            f'"approvals_required" must be 1 or more (got {approvals_required}). '
            "To skip approval for these requesters, write self_service = true instead."
        )
    if not self_service and not approvers:
        r.fail('the rule has no "approvers", so nobody could approve its requests. Add approvers = ["U…"].')
    user_approvers = [a for a in approvers if USER_ID.match(a)]
    if not self_service and len(user_approvers) == len(approvers) and approvals_required > len(approvers):
        r.fail(
            f'"approvals_required" is {approvals_required} but only {len(approvers)} approver(s) are listed, '
            "so no request could ever be approved."
        )
    for pattern in tags:
        if not pattern or pattern.startswith("="):
            r.fail(f'"tags": "{pattern}" needs a tag key, as in "env" or "env=staging".')
    images = r.strings("images")
    api = r.string("changeos_api", "auto") or "auto"
    if api not in CHANGEOS_APIS:
        r.fail(f'"changeos_api" must be "auto", "v1" or "v2", not "{api}".')
    by_image = table.get("changeos_api_images", {})
    if not isinstance(by_image, dict) or any(v not in CHANGEOS_APIS for v in by_image.values()):
        r.fail('"changeos_api_images" must be a table like { "CentOS*" = "v1" } with "auto", "v1" or "v2" values.')
    backup = r.string("backup", "off") or "off"
    if backup not in BACKUP_MODES:
        r.fail(
            f'"backup" must be "required" (no change without a backup), "offered" (a checkbox, on by default) or '
            f'"off", not "{backup}".'
        )
    keep_days = r.integer("backup_keep_days", 7)
    if not 1 <= keep_days <= 3650:
        r.fail(f'"backup_keep_days" must be between 1 and 3650 days; got {keep_days}.')
    keep_count = r.integer("backup_keep_count", 3)
    if not 1 <= keep_count <= 50:
        r.fail(
            f'"backup_keep_count" must be between 1 and 50 (IMS allows 50 private images per region); got {keep_count}.'
        )
    if backup == "off":
        extra = [k for k in ("backup_keep_days", "backup_keep_count", "backup_restart_on_failure") if k in table]
        if extra:
            r.fail(
                f'"{extra[0]}" has no effect with backup = "off". Remove it, or set backup = "offered" or "required".'
            )
    restart = r.boolean("backup_restart_on_failure", True)
    rollback_required: int | None = None
    if "rollback_approvals_required" in table:
        if self_service:
            r.fail('"rollback_approvals_required" makes no sense with self_service = true (nothing is approved).')
        rollback_required = r.integer("rollback_approvals_required", approvals_required)
        if not 1 <= rollback_required <= approvals_required:
            r.fail(
                f'"rollback_approvals_required" must be between 1 and approvals_required ({approvals_required}); '
                f"got {rollback_required}. A rollback may need fewer approvals than a change, never more."
            )
    return Rule(
        name=name,
        servers=tuple(servers),
        tags=tuple(tags),
        requesters=frozenset(requesters),
        approvers=frozenset(approvers),
        approvals_required=approvals_required,
        self_service=self_service,
        images=tuple(images),
        approvals_channel=r.channel("approvals_channel"),
        notify_channels=tuple(r.channels("notify_channels")),
        changeos_api=api,
        changeos_api_images=tuple((str(k), str(v)) for k, v in by_image.items()),
        backup=next(mode for mode in BACKUP_MODES if mode == backup),
        backup_keep_days=keep_days,
        backup_keep_count=keep_count,
        backup_restart_on_failure=restart,
        rollback_approvals_required=rollback_required,
    )


@dataclass(frozen=True)
class Policy:
    rules: tuple[Rule, ...] = ()
    approvals_channel: str | None = None
    notify_channels: tuple[str, ...] = ()
    request_expiry_minutes: int = 60
    allow_password_in_modal: bool = False
    max_fleet_size: int = 100  # servers in one fleet rollout
    source: str = "<policy>"
    _warnings: tuple[str, ...] = field(default=(), repr=False)

    # --- loading -----------------------------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str) -> Policy:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PolicyError(
                f"{path}: the policy file does not exist. Copy config/policy.example.toml to {path} and edit it, "
                "or point ECSBOT_POLICY at your policy file."
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"{path}: the policy file cannot be read ({exc.__class__.__name__}: {exc}).") from None
        return cls.parse(text, source=str(path))

    @classmethod
    def parse(cls, text: str, source: str = "<policy>") -> Policy:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PolicyError(f"{source}: this is not valid TOML: {exc}.") from None
        r = _Reader(source, "top level", data, _TOP_KEYS)
        problems = list(r.problems)

        def attempt(read: Callable[[], _T], default: _T) -> _T:
            """Each setting and each rule is read on its own, so every mistake in the file is reported at once."""
            try:
                return read()
            except PolicyError as exc:
                problems.extend(exc.problems)
                return default

        approvals_channel = attempt(lambda: r.channel("approvals_channel"), None)
        notify: list[str] = attempt(lambda: r.channels("notify_channels"), [])
        expiry = attempt(lambda: _expiry(r), 60)
        allow_pw = attempt(lambda: r.boolean("allow_password_in_modal", False), False)
        max_fleet = attempt(lambda: _max_fleet(r), 100)
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list):
            problems.append(
                f'{source}: top level: "rules" must be written as [[rules]] tables (double brackets), one per rule.'
            )
            raw_rules = []
        parsed = [attempt(partial(_parse_rule, source, i, t), None) for i, t in enumerate(raw_rules)]
        if problems:
            raise PolicyError(*problems)
        rules = tuple(rule for rule in parsed if rule is not None)
        warnings = _warnings_for(rules)
        return cls(
            rules=rules,
            approvals_channel=approvals_channel,
            notify_channels=tuple(notify),
            request_expiry_minutes=expiry,
            allow_password_in_modal=allow_pw,
            max_fleet_size=max_fleet,
            source=source,
            _warnings=tuple(warnings),
        )

    def warnings(self) -> list[str]:
        return list(self._warnings)

    # --- lookups -----------------------------------------------------------------------------------------------------

    @property
    def expiry(self) -> timedelta:
        return timedelta(minutes=self.request_expiry_minutes)

    def rule_for(self, server_name: str, server_id: str, tags: Iterable[str] | Mapping[str, str] = ()) -> Rule | None:
        tag_list = _normalise_tags(tags)
        return next((rule for rule in self.rules if rule.matches_server(server_name, server_id, tag_list)), None)

    def group_ids(self) -> set[str]:
        return {p for rule in self.rules for p in rule.requesters | rule.approvers if GROUP_ID.match(p)}

    def approvals_channel_for(self, rule: Rule | None, fallback: str) -> str:
        return (rule.approvals_channel if rule else None) or self.approvals_channel or fallback

    def notify_channels_for(self, rule: Rule | None) -> list[str]:
        extra = rule.notify_channels if rule else ()
        return list(dict.fromkeys([*self.notify_channels, *extra]))

    def approvals_needed(self, rule: Rule | None) -> int:
        """0 for a self-service rule: the request goes straight to `approved`."""
        if rule is None:
            return 1
        return 0 if rule.self_service else rule.approvals_required

    def rollback_approvals_needed(self, rule: Rule | None) -> int:
        """Approvals for a rollback to a backup: the rule's `rollback_approvals_required`, which may be lower."""
        if rule is None or rule.rollback_approvals_required is None:
            return self.approvals_needed(rule)
        return 0 if rule.self_service else rule.rollback_approvals_required

    def backup_mode(self, rule: Rule | None) -> BackupMode:
        return rule.backup if rule is not None else "off"

    def image_allowed(self, rule: Rule | None, image_name: str, image_id: str) -> bool:
        if rule is None:
            return False
        return any(p == image_id or (image_name and fnmatchcase(image_name, p)) for p in rule.images)

    def changeos_api(self, rule: Rule | None, image_name: str, image_id: str, cloud_init: bool) -> tuple[str, str]:
        """Which change-OS API carries the change ("v1" or "v2") and why, in words for the plan card.

        An image entry of the rule wins over the rule's own setting; "auto" follows the image's
        `__support_fc_inject` (an inference from IMS's docs, so admins may override it)."""
        choice, where = "auto", ""
        if rule is not None:
            choice, where = rule.changeos_api, f'rule "{rule.name}" says changeos_api = "{rule.changeos_api}"'
            for pattern, api in rule.changeos_api_images:
                if pattern == image_id or (image_name and fnmatchcase(image_name, pattern)):
                    choice, where = api, f'rule "{rule.name}" sets {api} for images like "{pattern}"'
                    break
        if choice == "auto":
            auto = "v2" if cloud_init else "v1"
            why = "the image supports Cloud-Init" if cloud_init else "the image has no Cloud-Init (__support_fc_inject)"
            return auto, why
        return choice, f"the policy {where}"

    def allowed_image_filter(self, rule: Rule | None) -> Callable[[str, str], bool]:
        """A predicate `(image_name, image_id) -> bool` for narrowing the modal's image list."""

        def allowed(image_name: str, image_id: str) -> bool:
            return self.image_allowed(rule, image_name, image_id)

        return allowed

    # --- decisions ---------------------------------------------------------------------------------------------------

    def may_request(
        self,
        user_id: str,
        groups: Iterable[str],
        server_name: str,
        server_id: str,
        tags: Iterable[str] | Mapping[str, str] = (),
    ) -> Decision:
        label = server_name or server_id
        rule = self.rule_for(server_name, server_id, tags)
        if rule is None:
            return Decision(
                False,
                f"No rule in the policy covers {label}, so nobody may change its OS. "
                f"Ask an admin to add a rule for it to {POLICY_HINT}.",
            )
        if not _named(user_id, set(groups), rule.requesters):
            return Decision(
                False,
                f"You are not among the requesters for {label} (rule '{rule.name}'). "
                f"Ask an admin to add you to {POLICY_HINT}.",
                rule,
            )
        if rule.self_service:
            return Decision(True, f"Allowed by rule '{rule.name}' (self-service: no approval needed).", rule)
        n = rule.approvals_required
        return Decision(True, f"Allowed by rule '{rule.name}'; needs {n} approval{'s' if n != 1 else ''}.", rule)

    def may_approve(
        self,
        user_id: str,
        groups: Iterable[str],
        request: ChangeRequest,
        tags: Iterable[str] | Mapping[str, str] = (),
    ) -> Decision:
        label = request.server_name or request.server_id
        rule = self.rule_for(request.server_name, request.server_id, tags)
        if request.state is not RequestState.PENDING_APPROVAL:
            state = request.state.value.replace("_", " ")
            return Decision(False, f"{request.id} is no longer waiting for approval (it is {state}).", rule)
        if user_id == request.requester:
            return Decision(
                False,
                f"You asked for {request.id} yourself, and nobody may approve their own request. "
                "Ask another approver to review it.",
                rule,
            )
        if user_id in request.approvals:
            return Decision(
                False,
                f"You have already approved {request.id}; it needs approval from someone else as well.",
                rule,
            )
        if rule is None:
            return Decision(
                False,
                f"No rule in the policy covers {label} any more, so nobody may approve this change. "
                f"Ask an admin to check {POLICY_HINT}.",
            )
        if not _named(user_id, set(groups), rule.approvers):
            return Decision(
                False,
                f"You are not among the approvers for {label} (rule '{rule.name}'). "
                f"Ask an admin to add you to {POLICY_HINT}, or ask a listed approver.",
                rule,
            )
        return Decision(True, f"Allowed by rule '{rule.name}'.", rule)

    def can_request_anything(self, user_id: str, groups: Iterable[str]) -> bool:
        g = set(groups)
        return any(_named(user_id, g, rule.requesters) for rule in self.rules)

    def can_approve_anything(self, user_id: str, groups: Iterable[str]) -> bool:
        g = set(groups)
        return any(_named(user_id, g, rule.approvers) for rule in self.rules)


def _warnings_for(rules: tuple[Rule, ...]) -> list[str]:
    if not rules:
        return [
            "The policy has no [[rules]], so nobody may request or approve anything. "
            "See config/policy.example.toml for how to write one."
        ]
    warnings: list[str] = []
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        label = f"rule '{rule.name}'"
        if rule.name in seen:
            warnings.append(
                f"{label} appears twice (rules {seen[rule.name] + 1} and {index + 1}); names help auditing."
            )
        seen.setdefault(rule.name, index)
        if not rule.servers and not rule.tags:
            warnings.append(f"{label} lists no servers and no tags, so it matches no server.")
        if not rule.requesters:
            warnings.append(f"{label} lists no requesters, so nobody can use it.")
        if not rule.images:
            warnings.append(f'{label} lists no images, so no target image is allowed. Use images = ["*"] for all.')
        if "*" in rule.servers:
            later = len(rules) - index - 1
            if later:
                warnings.append(f"{label} matches every server, so the {later} rule(s) after it are never used.")
    return warnings
