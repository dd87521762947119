"""The plan card's checklist: everything that would make the cloud refuse, found before anyone approves.

Pure: the Slack layer gathers the facts (server, image, key pairs, password check) and shows the checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from bot.domain.request import LoginMethod, StopType


class CheckLevel(StrEnum):
    OK = "ok"
    WARN = "warn"
    BLOCK = "block"

    @property
    def emoji(self) -> str:
        return {"ok": "✅", "warn": "⚠️", "block": "⛔"}[self.value]


class Field(StrEnum):
    """The form input a check is about: the form shows its ⛔ under that input (the server's and the image's own
    checks under the image, which is what would change them)."""

    FORM = "form"  # the form as a whole: its first input
    IMAGE = "image"
    LOGIN = "login"
    KEY = "key"
    REASON = "reason"
    BACKUP = "backup"  # the "image of the system disk first" checkbox (rules with backup = "offered")


@dataclass(frozen=True, slots=True)
class Check:
    level: CheckLevel
    title: str
    detail: str = ""
    field: Field = Field.IMAGE

    def __str__(self) -> str:
        return f"{self.level.emoji} {self.title}" + (f": {self.detail}" if self.detail else "")

    def encode(self) -> str:
        """One line for storage (the approval card keeps the checklist the requester saw, on every re-render)."""
        return "\t".join((self.level.value, self.title.replace("\t", " "), self.detail.replace("\t", " ")))

    @classmethod
    def decode(cls, line: str) -> Check:
        level, _, rest = line.partition("\t")
        title, _, detail = rest.partition("\t")
        try:
            return cls(CheckLevel(level), title, detail)
        except ValueError:
            return cls(CheckLevel.WARN, line)


@dataclass
class PlanFacts:
    """Plain values read from the cloud and the form; None means "not known"."""

    server_status: str = ""
    task_state: str | None = None
    locked: bool = False
    frozen: bool = False
    has_system_disk: bool = True
    system_disk_gb: int | None = None
    server_os_type: str | None = None
    image_found: bool = False
    image_name: str = ""
    image_status: str | None = None
    image_min_disk: int | None = None
    image_os_type: str | None = None
    image_cloud_init: bool = False
    image_allowed: bool = False
    # Compatibility with the server's flavor (None: not known, so not checked). Reference §21.
    image_kind: str | None = None  # virtual_env_type: FusionCompute (ECS system disk), Ironic, DataImage, IsoImage
    image_architecture: str | None = None  # "arm" | "x86"
    image_firmware: str | None = None  # "uefi" | "bios"
    image_support_kvm: bool | None = None
    image_support_xen: bool | None = None
    flavor_architecture: str | None = None  # "arm" | "x86"
    flavor_virtualization: str | None = None  # "KVM" | "Xen"
    flavor_id: str | None = None
    changeos_api: str | None = None  # "v1" | "v2": the API that will carry the change
    changeos_api_reason: str = ""
    login: LoginMethod | None = None
    keyname: str | None = None
    keypair_exists: bool | None = None
    password_set: bool = False
    password_problems: list[str] = field(default_factory=list)
    stop_first: bool = False
    stop_type: StopType = StopType.SOFT


_OK, _WARN, _BLOCK = CheckLevel.OK, CheckLevel.WARN, CheckLevel.BLOCK
_LOGIN, _KEY = Field.LOGIN, Field.KEY


def _server_checks(f: PlanFacts) -> list[Check]:
    checks: list[Check] = []
    if f.locked:
        checks.append(
            Check(_BLOCK, "Server is locked", "Unlock it in the console first; the cloud refuses a locked server.")
        )
    if f.frozen:
        checks.append(
            Check(_BLOCK, "Server is frozen", "The resource is frozen (billing or compliance); settle that first.")
        )
    if not f.has_system_disk:
        checks.append(
            Check(_BLOCK, "No system disk", "The server has no system disk attached, so its OS cannot be changed.")
        )
    if f.task_state:
        checks.append(
            Check(
                _BLOCK,
                "Another operation is running",
                f"The server is busy ({f.task_state}). Wait until it finishes, then open the plan again.",
            )
        )
    status = (f.server_status or "").upper()
    if status == "SHUTOFF":
        checks.append(Check(_OK, "Server is stopped", "Ready for the change."))
    elif status == "ACTIVE":
        if f.stop_first:
            checks.append(Check(_OK, "Server is running", f"It will be stopped first ({f.stop_type.value})."))
        else:
            checks.append(
                Check(
                    _BLOCK,
                    "Server is running",
                    "Choose “stop first” so the bot stops it before the change, or stop it yourself.",
                )
            )
    elif status == "ERROR":
        checks.append(
            Check(
                _WARN,
                "Server is in ERROR",
                "Allowed (changing the OS often repairs a failed change), but check why it failed first.",
            )
        )
    else:
        checks.append(
            Check(
                _BLOCK,
                f"Server is {status or 'in an unknown state'}",
                "The OS can be changed only when the server is SHUTOFF (or ACTIVE and stopped first). "
                "Wait for the current operation to finish.",
            )
        )
    return checks


def _image_checks(f: PlanFacts) -> list[Check]:
    name = f.image_name or "the image"
    if not f.image_found:
        return [Check(_BLOCK, "Image not found", "Pick an image from the list, or check its name or ID.")]
    checks: list[Check] = []
    status = (f.image_status or "").lower()
    if status != "active":
        checks.append(
            Check(
                _BLOCK,
                "Image is not active",
                f"{name} is {status or 'in an unknown state'}; only active images can be used. Pick another.",
            )
        )
    if f.image_min_disk:
        if f.system_disk_gb is None:
            checks.append(
                Check(
                    _WARN,
                    "System disk size unknown",
                    f"{name} needs at least {f.image_min_disk} GB; the size could not be read, so check it.",
                )
            )
        elif f.image_min_disk > f.system_disk_gb:
            checks.append(
                Check(
                    _BLOCK,
                    "System disk too small",
                    f"{name} needs {f.image_min_disk} GB but the system disk has {f.system_disk_gb} GB. "
                    "Expand the disk or pick a smaller image.",
                )
            )
        else:
            checks.append(Check(_OK, "Image fits the disk", f"Needs {f.image_min_disk} GB of {f.system_disk_gb} GB."))
    checks.extend(_compatibility_checks(f, name))
    api = f.changeos_api or ("v2" if f.image_cloud_init else "v1")
    why = f.changeos_api_reason or (
        "the image supports Cloud-Init" if f.image_cloud_init else "the image has no Cloud-Init (__support_fc_inject)"
    )
    windows = (f.image_os_type or "").lower() == "windows"
    if windows and api == "v1":
        checks.append(
            Check(
                _BLOCK,
                "Windows through the v1 API",
                f"{name} is a Windows image, and the change-OS API without Cloud-Init (v1) cannot change an ECS to "
                "Windows. Pick a Windows image with Cloudbase-Init, or a Linux image.",
            )
        )
    elif windows:
        checks.append(
            Check(_WARN, "Windows target", "Huawei no longer provides public Windows images; use your own image.")
        )
    label = "Cloud-Init API (v2)" if api == "v2" else "non-Cloud-Init API (v1)"
    checks.append(Check(_OK, f"Uses the {label}", f"Because {why}."))
    if not f.image_allowed:
        checks.append(
            Check(
                _BLOCK,
                "Image not allowed by policy",
                f"The policy rule for this server does not list {name}. Pick an allowed image or ask an admin.",
            )
        )
    return checks


_KINDS = {"Ironic": "a bare-metal (BMS) image", "DataImage": "a data-disk image", "IsoImage": "an ISO image"}


def _compatibility_checks(f: PlanFacts, name: str) -> list[Check]:
    """What the cloud would refuse (or fail in the job) because the image does not fit this server's flavor."""
    checks: list[Check] = []
    if f.image_kind and f.image_kind != "FusionCompute":
        what = _KINDS.get(f.image_kind, f"a {f.image_kind} image")
        checks.append(
            Check(
                _BLOCK, "Not an ECS system-disk image", f"{name} is {what}, not an ECS system-disk image. Pick another."
            )
        )
        return checks
    flavor = f.flavor_id or "the server's flavor"
    if f.image_architecture and f.flavor_architecture and f.image_architecture != f.flavor_architecture:
        checks.append(
            Check(
                _BLOCK,
                "Architecture differs",
                f"{name} is built for {f.image_architecture.upper()} but {flavor} is {f.flavor_architecture.upper()}. "
                "Pick an image of the same architecture (or resize the server first).",
            )
        )
    elif f.flavor_architecture == "arm" and f.image_firmware and f.image_firmware != "uefi":
        checks.append(
            Check(
                _BLOCK,
                "Boot firmware does not fit",
                f"{flavor} is an ARM flavor, which boots with UEFI only, and {name} boots with "
                f"{f.image_firmware.upper()}. Pick a UEFI image.",
            )
        )
    virtualization = f.flavor_virtualization
    supported = {"KVM": f.image_support_kvm, "Xen": f.image_support_xen}.get(virtualization or "")
    if virtualization and supported is False:
        checks.append(
            Check(
                _BLOCK,
                f"Image does not support {virtualization}",
                f"{flavor} runs on {virtualization} and {name} does not support it. Pick an image that does.",
            )
        )
    if f.flavor_architecture is None and f.flavor_id:
        checks.append(
            Check(_WARN, "Flavor not read", f"Could not read {flavor}, so its architecture was not compared.")
        )
    elif not checks and f.flavor_architecture:
        checks.append(Check(_OK, "Image fits the flavor", f"{f.flavor_architecture.upper()}, {virtualization or '?'}."))
    return checks


def _login_checks(f: PlanFacts) -> list[Check]:
    windows = (f.image_os_type or "").lower() == "windows"
    if f.login is None:
        return [Check(_BLOCK, "No login method", "Choose a key pair or an admin password.", _LOGIN)]
    if f.login is LoginMethod.KEYPAIR:
        if windows:
            return [
                Check(_BLOCK, "Key pair on Windows", "Windows supports only password login: choose a password.", _KEY)
            ]
        if not f.keyname:
            return [Check(_BLOCK, "No key pair chosen", "Pick a key pair, or choose an admin password instead.", _KEY)]
        if f.keypair_exists is False:
            return [
                Check(
                    _BLOCK,
                    "Unknown key pair",
                    f"The bot's IAM user (HUAWEICLOUD_USER_ID) has no key pair named {f.keyname} in this region. Key "
                    "pairs belong to the user who created them: pick one of the bot user's, or import the public key "
                    "as that user.",
                    _KEY,
                )
            ]
        if f.keypair_exists is None:
            return [Check(_WARN, "Key pair not checked", f"Could not list key pairs to confirm {f.keyname}.", _KEY)]
        return [Check(_OK, "Key pair login", f"Log in with key pair {f.keyname}.", _KEY)]
    if not f.password_set:
        return [
            Check(
                _BLOCK,
                "Password not set",
                "Set the admin password: with the secure link, or type it twice below.",
                _LOGIN,
            )
        ]
    if f.password_problems:
        return [Check(_BLOCK, "Password rejected", problem, _LOGIN) for problem in f.password_problems]
    return [Check(_OK, "Admin password set", "Stored encrypted until the change is submitted.", _LOGIN)]


def preflight(facts: PlanFacts) -> list[Check]:
    """Every check, in the order the plan card shows them: server, image, login."""
    return [*_server_checks(facts), *_image_checks(facts), *_login_checks(facts)]


def blocking(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.level is CheckLevel.BLOCK]
