"""The plan of a change, as pure functions of data: what the form says, what the cloud said and what the policy
allows become the checks (each under the form field it is about) and, when nothing blocks, the ChangeRequest.

No I/O and no clock: the listener gathers the facts, calls these, and turns the result into a view. The same
evaluation serves the plan card (every rebuild of the form) and the submission (validated again on the server).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import SecretStr

from bot.cloud.models import Image, ImageQuota, Server
from bot.domain.backup import backup_minutes, is_own_backup, quota_check
from bot.domain.passwords import password_problems
from bot.domain.policy import Policy, Rule
from bot.domain.preflight import Check, CheckLevel, Field, PlanFacts, preflight
from bot.domain.request import ChangeRequest, LoginMethod, StopType
from bot.domain.tracking import MISSING_USER_ID
from bot.services.imagematch import Resolution

ERROR_LIMIT = 1900  # Slack shows an input's error up to 2,000 characters


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What the cloud said about the server: itself, its system disk, its flavor's architecture and hypervisor."""

    server: Server
    system_disk_gb: int | None = None
    architecture: str | None = None  # "arm" | "x86"; None when the flavor could not be read
    virtualization: str | None = None  # "KVM" | "Xen"; None when not known


@dataclass(frozen=True, slots=True)
class PasswordInput:
    """The admin password as the form holds it: typed twice into the form, or set on the secure page."""

    is_set: bool = False
    typed: SecretStr | None = field(default=None, repr=False)  # typed into the form (the fallback without a page)
    confirm: SecretStr | None = field(default=None, repr=False)
    kept: SecretStr | None = field(default=None, repr=False)  # set on the secure page, waiting for the submit
    unavailable: str | None = None  # why this form cannot take a password; None when it can


@dataclass(frozen=True, slots=True)
class PlanInputs:
    """What the person chose (or the command said, or the defaults filled in)."""

    image_id: str | None = None
    login: LoginMethod | None = None
    keyname: str | None = None
    stop_type: StopType | None = None  # None: SOFT
    reason: str | None = None
    ticket: str | None = None
    notify: tuple[str, ...] = ()
    password: PasswordInput = PasswordInput()
    image_query: Resolution | None = None  # the image the command named, when it selected none: the check says why
    backup: bool | None = None  # the form's backup checkbox (rules with backup = "offered"); None: not shown, on
    rollback_of: str | None = None  # the request whose backup this change restores (checked by the caller)


@dataclass(frozen=True, slots=True)
class PlanPolicy:
    """The policy's rule for this person and server, and what the bot's set-up allows."""

    policy: Policy
    rule: Rule | None
    keypair_login: bool = True  # False without HUAWEICLOUD_USER_ID: the change-OS API needs it for a key pair


@dataclass(frozen=True, slots=True)
class Plan:
    inputs: PlanInputs
    server: ServerFacts
    image: Image | None
    policy: PlanPolicy
    checks: tuple[Check, ...]
    cloud_init: bool  # the v2 (Cloud-Init) change-OS API carries it
    password_problem: str | None = None  # a typed password the cloud would refuse: the form clears and says why
    backup: bool = False  # an image of the system disk is taken before the change

    @property
    def blocking(self) -> list[Check]:
        return [c for c in self.checks if c.level is CheckLevel.BLOCK]

    @property
    def errors(self) -> dict[Field, str]:
        """Every ⛔, grouped under the field it is about."""
        grouped: dict[Field, list[str]] = {}
        for check in self.blocking:
            grouped.setdefault(check.field, []).append(_line(check))
        return {where: " ".join(lines)[:ERROR_LIMIT] for where, lines in grouped.items()}

    @property
    def approvals_needed(self) -> int:
        """A rollback to a backup may need fewer approvals (the rule's `rollback_approvals_required`)."""
        policy, rule = self.policy.policy, self.policy.rule
        return policy.rollback_approvals_needed(rule) if self.inputs.rollback_of else policy.approvals_needed(rule)

    @property
    def self_service(self) -> bool:
        return self.approvals_needed == 0


def _line(check: Check) -> str:
    return f"⛔ {check.title}: {check.detail}" if check.detail else f"⛔ {check.title}"


# What a submitted form must hold before anything is looked up, in the order the form asks for it.
_REQUIRED: tuple[tuple[Field, str], ...] = (
    (Field.IMAGE, "Choose the target image."),
    (Field.LOGIN, "Choose how to log in after the change."),
    (Field.KEY, "Choose a key pair."),
    (Field.REASON, "Say why: approvers and the audit trail need a reason."),
)


def missing_inputs(inputs: PlanInputs) -> dict[Field, str]:
    """The inputs a submitted form still lacks (a key pair only when logging in with one)."""
    present = {
        Field.IMAGE: bool(inputs.image_id),
        Field.LOGIN: inputs.login is not None,
        Field.KEY: inputs.login is not LoginMethod.KEYPAIR or bool(inputs.keyname),
        Field.REASON: bool(inputs.reason),
    }
    return {where: message for where, message in _REQUIRED if not present[where]}


def default_inputs(
    chosen: PlanInputs, *, typed: PlanInputs, server: Server, image: Image | None, keypairs: Sequence[str]
) -> PlanInputs:
    """What the form shows: what was chosen in it wins, then what the command typed, then defaults (a password for
    a Windows image, else the server's own key pair when the bot's user has it)."""
    login = chosen.login or typed.login
    if login is None:
        login = LoginMethod.PASSWORD if image is not None and image.os_type == "Windows" else LoginMethod.KEYPAIR
    keyname = chosen.keyname or typed.keyname  # a typed key is never swapped; an unknown one is a ⛔ check
    if keyname is None and server.key_name in keypairs:
        keyname = server.key_name
    return PlanInputs(
        image_id=chosen.image_id,
        login=login,
        keyname=keyname,
        stop_type=chosen.stop_type or typed.stop_type or StopType.SOFT,
        reason=chosen.reason or typed.reason,
        ticket=chosen.ticket or typed.ticket,
        notify=chosen.notify or typed.notify,
        password=chosen.password,
        image_query=chosen.image_query,
        backup=chosen.backup,
        rollback_of=chosen.rollback_of,
    )


def evaluate_plan(
    inputs: PlanInputs,
    server: ServerFacts,
    image: Image | None,
    keypairs: Sequence[str],
    policy: PlanPolicy,
    *,
    quota: ImageQuota | None = None,
) -> Plan:
    """Every check the plan card shows, in its order (server, image, login, backup), each under its field.

    `quota` is IMS's private-image quota as read by the caller (None: not known); it matters only with a backup."""
    rule = policy.rule
    api, api_reason = policy.policy.changeos_api(rule, image.name, image.id, image.cloud_init) if image else (None, "")
    login = inputs.login
    keyname = inputs.keyname if login is LoginMethod.KEYPAIR else None
    s = server.server
    checks = preflight(
        PlanFacts(
            server_status=s.status,
            task_state=s.task_state,
            locked=s.locked,
            frozen=s.metadata.get("EcmResStatus") == "freeze",
            has_system_disk=s.system_volume is not None,
            system_disk_gb=server.system_disk_gb,
            server_os_type=s.os_type,
            image_found=image is not None,
            image_name=image.name if image else "",
            image_status=image.status if image else None,
            image_min_disk=image.min_disk if image else None,
            image_os_type=image.os_type if image else None,
            image_cloud_init=image.cloud_init if image else False,
            image_allowed=bool(image and rule and _image_allowed(policy, image, server.server.id)),
            image_kind=image.kind if image else None,
            image_architecture=image.architecture if image else None,
            image_firmware=image.boot_firmware if image else None,
            image_support_kvm=image.supports("kvm") if image else None,
            image_support_xen=image.supports("xen") if image else None,
            flavor_id=s.flavor.id if s.flavor else None,
            flavor_architecture=server.architecture,
            flavor_virtualization=server.virtualization,
            changeos_api=api,
            changeos_api_reason=api_reason,
            login=login,
            keyname=keyname,
            keypair_exists=(keyname in keypairs) if keyname else None,
            password_set=inputs.password.is_set,
            password_problems=_kept_password_problems(inputs, image),
            stop_first=s.status == "ACTIVE",
            stop_type=inputs.stop_type or StopType.SOFT,
        )
    )
    if image is None and not inputs.image_id:  # a chosen image that vanished keeps "Image not found"
        missing = no_image_check(inputs.image_query)
        checks = [missing if c.title == "Image not found" else c for c in checks]
    checks.extend(_unavailable_logins(inputs, policy))
    backup = backup_wanted(policy, inputs)
    if backup:
        checks.extend(_backup_checks(policy, server, quota))
    return Plan(
        inputs=inputs,
        server=server,
        image=image,
        policy=policy,
        checks=tuple(checks),
        cloud_init=api == "v2",
        password_problem=_typed_password_problem(inputs, image),
        backup=backup,
    )


def _image_allowed(policy: PlanPolicy, image: Image, server_id: str) -> bool:
    """The rule's `images` patterns, or the server's own backup (a rollback must not need `ecsbot-*` in them)."""
    if policy.policy.image_allowed(policy.rule, image.name, image.id):
        return True
    return image.visibility != "public" and is_own_backup(image.tags, image.data_origin, server_id)


def backup_wanted(policy: PlanPolicy, inputs: PlanInputs) -> bool:
    """`required`: always; `offered`: the form's checkbox, on unless unticked; `off`: never."""
    mode = policy.policy.backup_mode(policy.rule)
    return mode == "required" or (mode == "offered" and inputs.backup is not False)


def _backup_checks(policy: PlanPolicy, server: ServerFacts, quota: ImageQuota | None) -> list[Check]:
    """What the backup will do, and whether it fits the private-image quota (a ⛔ before approval if not)."""
    rule = policy.rule
    where = Field.BACKUP if policy.policy.backup_mode(rule) == "offered" else Field.FORM
    days = rule.backup_keep_days if rule else 7
    line = f"image of the system disk first (≈ {backup_minutes(server.system_disk_gb)} minutes), kept {days} days"
    if quota is None:
        return [Check(CheckLevel.WARN, "Backup first", f"{line}; the image quota could not be read", where)]
    fits = quota_check(quota.used, quota.quota)
    if not fits.fits:
        return [Check(CheckLevel.BLOCK, "Backup does not fit the image quota", fits.text, where)]
    return [Check(CheckLevel.OK, "Backup first", f"{line}; {fits.text}", where)]


def _unavailable_logins(inputs: PlanInputs, policy: PlanPolicy) -> list[Check]:
    login, password = inputs.login, inputs.password
    if login is LoginMethod.PASSWORD and password.unavailable:
        return [Check(CheckLevel.BLOCK, "Password login unavailable", password.unavailable, Field.LOGIN)]
    if login is LoginMethod.KEYPAIR and not policy.keypair_login:
        return [Check(CheckLevel.BLOCK, "Key pair login unavailable", MISSING_USER_ID, Field.KEY)]
    return []


def _os_type(image: Image | None) -> str:
    return (image.os_type if image else None) or "Linux"


def _kept_password_problems(inputs: PlanInputs, image: Image | None) -> list[str]:
    """A password set on the page for one image can break the rules of another chosen afterwards."""
    kept = inputs.password.kept
    if inputs.login is not LoginMethod.PASSWORD or kept is None or image is None:
        return []
    if not password_problems(kept.get_secret_value(), os_type=_os_type(image)):
        return []
    return [
        f"The password set on the secure page does not meet the rules of {image.name} ({image.os_type}). Set it "
        "again with the link."
    ]


def _typed_password_problem(inputs: PlanInputs, image: Image | None) -> str | None:
    typed, confirm = inputs.password.typed, inputs.password.confirm
    if inputs.login is not LoginMethod.PASSWORD or typed is None:
        return None
    value = typed.get_secret_value()
    if confirm is None or confirm.get_secret_value() != value:
        return "The two passwords differ. Type them again."
    problems = password_problems(value, os_type=_os_type(image))
    return " ".join(problems) if problems else None


def build_change_request(plan: Plan, *, requester: str, origin_channel: str, now: datetime) -> ChangeRequest:
    """The request a plan without ⛔ becomes; pydantic's ValidationError when a value breaks the request's rules."""
    image, inputs, server = plan.image, plan.inputs, plan.server.server
    if image is None or plan.blocking:
        raise ValueError("a plan with blocking checks cannot become a request")
    policy, rule = plan.policy.policy, plan.policy.rule
    login = inputs.login or LoginMethod.KEYPAIR
    return ChangeRequest(
        requester=requester,
        origin_channel=origin_channel,
        server_id=server.id,
        server_name=server.name,
        server_status=server.status,
        current_image_id=server.image_id,
        current_image_name=server.image_name,
        target_image_id=image.id,
        target_image_name=image.name,
        target_os_type=_os_type(image),
        cloud_init=plan.cloud_init,
        login=login,
        keyname=inputs.keyname if login is LoginMethod.KEYPAIR else None,
        has_password=login is LoginMethod.PASSWORD,
        stop_first=server.status == "ACTIVE",
        stop_type=inputs.stop_type or StopType.SOFT,
        reason=inputs.reason or "",
        ticket=inputs.ticket,
        notify_channels=list(dict.fromkeys([*policy.notify_channels_for(rule), *inputs.notify])),
        checklist=[check.encode() for check in plan.checks],
        approvals_channel=policy.approvals_channel_for(rule, origin_channel),
        approvals_required=max(1, plan.approvals_needed),
        expires_at=now + policy.expiry,
        backup_wanted=plan.backup,
        backup_restart=rule.backup_restart_on_failure if rule else True,
        rollback_of=inputs.rollback_of,
    )


def no_image_check(found: Resolution | None) -> Check:
    """Why no image is selected: none given, several match, or none matches. The names themselves go to the
    person once, in an ephemeral message (see `image_reply`); the form says what to do in the form."""
    if found is None or not found.query:
        return Check(CheckLevel.BLOCK, "No image chosen", "The command named none: pick the target image in the list.")
    if found.matches:
        total = max(found.total, len(found.matches))
        return Check(
            CheckLevel.BLOCK,
            "Several images match",
            f"{found.query} matches {total} images. Type part of a name in the image field to see them and pick "
            "one, or run the command with the exact name or ID.",
        )
    hint = f" Closest: {', '.join(found.suggestions[:3])}." if found.suggestions else ""
    return Check(
        CheckLevel.BLOCK,
        "Image not found",
        f"No image that can serve this server is named {found.query}.{hint} Type part of its name in the image field, "
        "or check its name or ID.",
    )


def image_reply(found: Resolution) -> str | None:
    """The ephemeral answer to an image argument that selects nothing: its matches (never a guess), or the closest
    names. Plain text: the caller escapes it for Slack."""
    if found.image is not None or not found.query:
        return None
    if found.matches:
        total = max(found.total, len(found.matches))
        names = "\n".join(f"• {i.name} ({i.id})" for i in found.matches)
        more = f"\n…and {total - len(found.matches)} more." if total > len(found.matches) else ""
        return (
            f"The image {found.query} matches {total} images, so none was chosen:\n{names}{more}\n"
            "Pick one in the form's image field, or run /changeos again with its exact name or ID."
        )
    if found.suggestions:
        return (
            f"No image that can serve this server is named {found.query}. Closest names: "
            f"{', '.join(found.suggestions)}. Pick one in the form's image field, or check the name."
        )
    return (
        f"No image that can serve this server is named {found.query}, and no name is close. Type part of a name in "
        "the form's image field to search the catalogue."
    )


def rollback_refusal(original: ChangeRequest | None, request_id: str) -> str | None:
    """Why `request_id` cannot be rolled back (None: it can): it must have ended, with a backup taken."""
    if original is None:
        return f"There is no change request {request_id}. `/changeos status SERVER` lists a server's requests."
    if original.is_live:
        return (
            f"{original.id} is still {original.state.value.replace('_', ' ')}: wait for it to end (or cancel it), then "
            "roll back."
        )
    if original.backup_image_id is None:
        why = original.backup_failure or "it took no backup (its rule has backup off, or it ended before one)"
        return f"{original.id} has no backup to roll back to: {why}"
    return None
