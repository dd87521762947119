"""The simulator's fixtures file (TOML): credentials, timing, images, key pairs, servers with volumes, faults.

Validated with pydantic so a typo in a fixtures file gives a message that names the key, not a stack trace.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from sandbox.simulator.faults import FaultSpec
from sandbox.simulator.flavors import parse_flavor

REPO_FIXTURES = Path(__file__).resolve().parents[2] / "config" / "simulator.toml"
PACKAGED_FIXTURES = Path(__file__).resolve().parents[1] / "defaults" / "simulator.toml"


class FixtureError(ValueError):
    """A fixtures file that cannot be used; the message says where and what to fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Range = tuple[float, float]


class Timing(_Strict):
    """Durations in seconds at speed 1, each drawn from [low, high]."""

    stop_soft: Range = (20.0, 40.0)
    stop_hard: Range = (5.0, 10.0)
    start: Range = (10.0, 20.0)
    already_done: Range = (1.0, 2.0)
    job_init: Range = (4.0, 6.0)
    change_running: Range = (180.0, 300.0)
    min_disk_check: Range = (5.0, 10.0)
    image_create: Range = (180.0, 300.0)  # system-disk image from an ECS: the doc's example job took 222 s
    image_delete: Range = (2.0, 5.0)  # after the 204, until the image is gone from the list

    @field_validator("*")
    @classmethod
    def _ordered(cls, value: Range) -> Range:
        low, high = value
        if low < 0 or high < low:
            raise ValueError("a range is [low, high] with 0 <= low <= high")
        return value


class SimulatorSettings(_Strict):
    project_id: str = "0605767ef600d5762f23c013c6e7ad23"
    access_key: str = "SIMULATORAK000000000"
    secret_key: SecretStr = SecretStr("simulator-secret-key-0000000000000000000")
    user_id: str = "7e25b1da389f4697a79df3a0e5bd494e"
    region: str = "my-kualalumpur-1"
    power_on_after_change: bool = True


class ImageFixture(_Strict):
    id: str
    name: str
    status: Literal["queued", "saving", "deleted", "killed", "active"] = "active"
    os_type: Literal["Linux", "Windows", "Other"] = "Linux"
    platform: str = "Other"
    os_version: str = ""
    os_bit: str = "64"
    min_disk: int = Field(default=40, ge=1, le=1024)
    min_ram: int = Field(default=0, ge=0)
    support_fc_inject: str | None = None
    imagetype: Literal["gold", "private", "shared", "market"] = "gold"
    visibility: Literal["public", "private", "shared"] = "public"
    virtual_env_type: Literal["FusionCompute", "Ironic", "DataImage", "IsoImage"] = "FusionCompute"
    architecture: Literal["x86", "arm"] = "x86"
    hw_firmware_type: Literal["bios", "uefi"] | None = None  # absent means BIOS
    support_kvm: bool = True
    support_xen: bool = False


class KeyPairFixture(_Strict):
    name: str
    fingerprint: str
    public_key: str
    type: str = "ssh"
    owner: str | None = None  # IAM user id; absent = the configured [simulator] user_id


class CatalogueSettings(_Strict):
    """Generated images besides [[images]]: `size` of them, the same for the same `seed`."""

    size: int = Field(default=0, ge=0, le=100_000)
    seed: int = 0


class AgencySettings(_Strict):
    """ECS agency credentials from the metadata service: valid `lifetime` s, renewed `renew_before` s early."""

    name: str = "ecsbot-agency"  # "" = no agency on this ECS: the metadata service refuses
    lifetime: float = Field(default=3600.0, gt=0)
    renew_before: float = Field(default=600.0, ge=0)

    @model_validator(mode="after")
    def _overlap(self) -> AgencySettings:
        if self.renew_before >= self.lifetime:
            raise ValueError("renew_before must be shorter than lifetime")
        return self


class Switches(_Strict):
    """One switch per reading the reference leaves unconfirmed [U]; docs/simulator.md 'Choices ... not documented'."""

    images_unknown_params: Literal["refuse", "ignore"] = "refuse"
    architecture_filter: Literal["honour", "ignore", "refuse"] = "ignore"
    images_page_link: Literal["none", "page_info", "next"] = "none"
    images_limit_max: int = Field(default=1000, ge=1)
    incompatible_image: Literal["job", "sync"] = "job"
    foreign_keypair: Literal["sync", "job"] = "sync"
    fc_inject: Literal["strict", "any"] = "strict"
    windows_v1: Literal["refuse", "allow"] = "refuse"
    changeos_sub_jobs: bool = True
    job_ttl: float | None = Field(default=None, gt=0)
    metadata_token: Literal["optional", "required", "unsupported"] = "optional"
    image_from_running: Literal["refuse", "allow"] = "refuse"  # IMG.0008 unless the ECS is stopped
    image_job_entities: Literal["on_success", "while_running"] = "on_success"  # image_id, process_percent
    failed_image: Literal["killed", "removed"] = "killed"  # what a FAILed image job leaves in the list
    image_quota: int = Field(default=50, ge=0)  # private images per region (reference §16)


class VolumeFixture(_Strict):
    id: str
    size: int = Field(ge=1)
    boot_index: str = "0"
    device: str = "/dev/vda"
    name: str | None = None
    volume_type: str = "SSD"


class ServerFixture(_Strict):
    id: str
    name: str
    status: Literal["ACTIVE", "SHUTOFF", "ERROR"] = "SHUTOFF"
    image_id: str
    locked: bool = False
    failed_change: bool = False
    key_name: str | None = None
    flavor: str = "s6.large.2"
    ip: str = "192.168.0.10"
    availability_zone: str = "my-kualalumpur-1a"
    metadata: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    volumes: list[VolumeFixture] = Field(default_factory=list)

    @field_validator("tags")
    @classmethod
    def _ecs_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        """ECS rules (reference §23): at most 10 tags; key ≤36 and value ≤43 of letters, digits, `_`, `-` (`.`)."""
        if len(tags) > 10:
            raise ValueError("a server has at most 10 tags")
        for key, value in tags.items():
            if not re.fullmatch(r"[\w-]{1,36}", key) or not re.fullmatch(r"[\w.-]{0,43}", value):
                raise ValueError(f"tag {key}={value}: keys have 1-36 and values 0-43 letters, digits, _ or - (value .)")
        return tags


class Fixtures(_Strict):
    simulator: SimulatorSettings = SimulatorSettings()
    timing: Timing = Timing()
    catalogue: CatalogueSettings = CatalogueSettings()
    switches: Switches = Switches()
    agency: AgencySettings = AgencySettings()
    images: list[ImageFixture] = Field(default_factory=list)
    keypairs: list[KeyPairFixture] = Field(default_factory=list)
    servers: list[ServerFixture] = Field(default_factory=list)
    faults: list[FaultSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Fixtures:
        image_ids = {image.id for image in self.images}
        for kind, ids in (
            ("image", [i.id for i in self.images]),
            ("server", [s.id for s in self.servers]),
            ("volume", [v.id for s in self.servers for v in s.volumes]),
            ("key pair", [f"{k.owner or self.simulator.user_id}/{k.name}" for k in self.keypairs]),
        ):
            dupes = sorted({x for x in ids if ids.count(x) > 1})
            if dupes:
                raise ValueError(f"duplicate {kind} id(s): {', '.join(dupes)}")
        for server in self.servers:
            if server.image_id not in image_ids:
                raise ValueError(
                    f"server {server.name!r} uses image_id {server.image_id!r}, which is not in [[images]]"
                )
            if parse_flavor(server.flavor) is None:
                raise ValueError(
                    f"server {server.name!r} has flavor {server.flavor!r}, which the simulator does not know; use "
                    "<family>.<size>.<ratio> with a family such as s6, c7, m6, s1 (Xen), kc1 or km1 (ARM)"
                )
        return self


def default_fixtures_path() -> Path:
    """config/simulator.toml in a checkout; sandbox/defaults/simulator.toml when installed from a wheel."""
    return REPO_FIXTURES if REPO_FIXTURES.exists() else PACKAGED_FIXTURES


def parse_fixtures(data: dict[str, Any], *, source: str = "fixtures") -> Fixtures:
    try:
        return Fixtures.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}" for err in exc.errors()
        )
        raise FixtureError(
            f"{source}: {problems}. See docs/simulator.md (Fixtures) for the fixtures format."
        ) from None


def load_fixtures(path: Path | None = None) -> Fixtures:
    path = path or default_fixtures_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FixtureError(f"cannot read fixtures file {path}: {exc.strerror}. Pass --fixtures FILE.") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FixtureError(f"{path} is not valid TOML: {exc}") from None
    return parse_fixtures(data, source=str(path))
