"""Pydantic models of the ECS, IMS, EVS and job APIs.

Response models are lenient like the official SDK (unknown keys kept, missing keys None) but typed, and accept the
shapes the reference marks [U] (unconfirmed): a job with or without `sub_jobs`, `entities` as {} or [],
`end_time` as "" or null. Request models are strict: they refuse what the cloud would refuse, before approval.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from bot.domain.passwords import password_problems


class StopType(StrEnum):
    SOFT = "SOFT"
    HARD = "HARD"


class JobStatus(StrEnum):
    """Known job states; `Job.status` stays a plain string so new values (e.g. PENDING_PAYMENT) never break us."""

    INIT = "INIT"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAIL = "FAIL"
    PENDING_PAYMENT = "PENDING_PAYMENT"


class _Response(BaseModel):
    """Unknown keys are kept (extra="allow") so nothing the cloud adds is lost or fatal."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)


def _str_or_none(value: Any) -> Any:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def _time_or_none(value: Any) -> datetime | None:
    """ "" and null mean "not yet" (end_time of a running job, [U]); an unparseable time is treated the same."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip())
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------------- ECS


class Flavor(_Response):
    """ECS returns every flavor value as a string (`"vcpus": "2"`); numbers are turned into strings too."""

    id: str | None = None
    name: str | None = None
    disk: str | None = None
    vcpus: str | None = None
    ram: str | None = None


class VolumeAttachment(_Response):
    id: str
    device: str | None = None
    boot_index: str | None = Field(default=None, alias="bootIndex")
    delete_on_termination: str | None = None

    _normalise = field_validator("boot_index", "delete_on_termination", mode="before")(_str_or_none)


class Server(_Response):
    id: str
    name: str = ""
    status: str = "UNKNOWN"
    vm_state: str | None = Field(default=None, alias="OS-EXT-STS:vm_state")
    task_state: str | None = Field(default=None, alias="OS-EXT-STS:task_state")
    power_state: int | None = Field(default=None, alias="OS-EXT-STS:power_state")
    root_device_name: str | None = Field(default=None, alias="OS-EXT-SRV-ATTR:root_device_name")
    locked: bool = False
    image_id: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    volumes: list[VolumeAttachment] = Field(default_factory=list, alias="os-extended-volumes:volumes_attached")
    flavor: Flavor | None = None
    key_name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _lift_image(cls, data: Any) -> Any:
        """`"image": {"id": ...}` becomes `image_id`; a volume-booted server may send `"image": ""`."""
        if isinstance(data, dict) and "image_id" not in data:
            image = data.get("image")
            if isinstance(image, dict) and image.get("id"):
                data = {**data, "image_id": str(image["id"])}
        return data

    @field_validator("metadata", mode="before")
    @classmethod
    def _metadata_strings(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            return {str(k): ("" if v is None else str(v)) for k, v in value.items()}
        return value

    @field_validator("volumes", mode="before")
    @classmethod
    def _volumes_list(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("task_state", "vm_state", "key_name", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("locked", mode="before")
    @classmethod
    def _locked(cls, value: Any) -> Any:
        return False if value is None else value

    @property
    def system_volume(self) -> VolumeAttachment | None:
        """The boot disk: `bootIndex == "0"`, else the volume on the root device name."""
        for volume in self.volumes:
            if volume.boot_index == "0":
                return volume
        if self.root_device_name:
            for volume in self.volumes:
                if volume.device == self.root_device_name:
                    return volume
        return None

    @property
    def image_name(self) -> str | None:
        return self.metadata.get("image_name") or None

    @property
    def os_type(self) -> str | None:
        return self.metadata.get("os_type") or None


class KeyPair(_Response):
    name: str
    fingerprint: str | None = None
    type: str | None = None
    public_key: str | None = None


# ---------------------------------------------------------------------------------------------------------- IMS


class Image(_Response):
    id: str
    name: str = ""
    status: str = ""
    os_type: str | None = Field(default=None, alias="__os_type")
    platform: str | None = Field(default=None, alias="__platform")
    os_version: str | None = Field(default=None, alias="__os_version")
    min_disk: int = 0
    min_ram: int = 0
    support_fc_inject: str | None = Field(default=None, alias="__support_fc_inject")
    image_type: str | None = Field(default=None, alias="__imagetype")
    visibility: str | None = None
    virtual_env_type: str | None = None
    support_arm: str | None = Field(default=None, alias="__support_arm")
    firmware: str | None = Field(default=None, alias="hw_firmware_type")
    os_bit: str | None = Field(default=None, alias="__os_bit")
    owner: str | None = None
    support_kvm: str | None = Field(default=None, alias="__support_kvm")
    support_xen: str | None = Field(default=None, alias="__support_xen")
    data_origin: str | None = Field(default=None, alias="__data_origin")  # "instance,<server id>": made from an ECS
    parent_image_id: str | None = Field(default=None, alias="__originalimagename")  # the image that ECS ran
    description: str | None = Field(default=None, alias="__description")
    tags: list[str] = Field(default_factory=list)  # "key=value"
    created_at: datetime | None = None
    size: int | None = None  # bytes

    _created = field_validator("created_at", mode="plain")(_time_or_none)

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_list(cls, value: Any) -> Any:
        return [str(t) for t in value] if isinstance(value, list) else []

    @field_validator("size", mode="before")
    @classmethod
    def _size(cls, value: Any) -> Any:
        return None if value in (None, "") else value

    @field_validator(
        "support_arm",
        "firmware",
        "os_bit",
        "virtual_env_type",
        "support_kvm",
        "support_xen",
        "data_origin",
        "parent_image_id",
        "description",
        mode="before",
    )
    @classmethod
    def _flags_str(cls, value: Any) -> Any:
        return _str_or_none(value)

    @property
    def architecture(self) -> str:
        """`arm` or `x86`: the SDK's image model has no `architecture` field; `__support_arm` says it."""
        return "arm" if (self.support_arm or "").lower() == "true" else "x86"

    def supports(self, virtualization: str) -> bool | None:
        """`__support_kvm` / `__support_xen` as a bool; None when the image does not say."""
        value = self.support_kvm if virtualization == "kvm" else self.support_xen
        return None if value is None else value.lower() == "true"

    @property
    def boot_firmware(self) -> str:
        """`uefi` or `bios`; an image without `hw_firmware_type` boots with BIOS."""
        return "uefi" if (self.firmware or "").lower() == "uefi" else "bios"

    @property
    def kind(self) -> str:
        """What the image is for: `FusionCompute` (ECS system disk), `Ironic` (BMS), `DataImage` or `IsoImage`."""
        return self.virtual_env_type or "FusionCompute"

    @property
    def is_ecs_system_image(self) -> bool:
        return self.kind == "FusionCompute"

    @field_validator("min_disk", "min_ram", mode="before")
    @classmethod
    def _zero_when_missing(cls, value: Any) -> Any:
        return 0 if value in (None, "") else value

    @field_validator("support_fc_inject", mode="before")
    @classmethod
    def _fc_inject_str(cls, value: Any) -> Any:
        return _str_or_none(value)

    @property
    def cloud_init(self) -> bool:
        """[U] inference from the IMS docs: `"true"` means NO Cloud-Init injection (v1 changeos), else v2."""
        return (self.support_fc_inject or "").lower() != "true"

    @property
    def source_server_id(self) -> str | None:
        """The ECS this image was made from (`__data_origin = "instance,<id>"`), or None."""
        kind, _, server_id = (self.data_origin or "").partition(",")
        return server_id or None if kind == "instance" else None

    @property
    def tag_map(self) -> dict[str, str]:
        """The image's tags as a dict (IMS lists them as "key=value" strings)."""
        pairs = (tag.partition("=") for tag in self.tags)
        return {key: value for key, _, value in pairs}


class ImageQuota(_Response):
    """Private images of this project: `used` of `quota` (IMS `GET /v1/cloudimages/quota`, type "image")."""

    type: str = "image"
    used: int = 0
    quota: int = 0

    @property
    def free(self) -> int:
        return max(self.quota - self.used, 0)


# ---------------------------------------------------------------------------------------------------------- EVS


class Volume(_Response):
    id: str
    size: int
    bootable: bool = False

    @field_validator("bootable", mode="before")
    @classmethod
    def _bootable(cls, value: Any) -> Any:
        return False if value in (None, "") else value


# ---------------------------------------------------------------------------------------------------------- jobs


def _entities_dict(value: Any) -> Any:
    """`entities` may be {}, [] or null ([U]); all mean "none"."""
    return value if isinstance(value, dict) else {}


class SubJobEntities(_Response):
    server_id: str | None = None
    nic_id: str | None = None
    errorcode_message: str | None = None


class SubJob(_Response):
    job_id: str | None = None
    job_type: str | None = None
    status: str = ""
    entities: SubJobEntities = Field(default_factory=SubJobEntities)
    begin_time: datetime | None = None
    end_time: datetime | None = None
    error_code: str | None = None
    fail_reason: str | None = None

    _entities = field_validator("entities", mode="before")(_entities_dict)
    _times = field_validator("begin_time", "end_time", mode="plain")(_time_or_none)
    _texts = field_validator("error_code", "fail_reason", mode="before")(_str_or_none)


class JobEntities(_Response):
    server_id: str | None = None
    nic_id: str | None = None
    sub_jobs_total: int | None = None
    sub_jobs: list[SubJob] = Field(default_factory=list)

    @field_validator("sub_jobs", mode="before")
    @classmethod
    def _sub_jobs_list(cls, value: Any) -> Any:
        return value if isinstance(value, list) else []


class _CloudJob(_Response):
    """What ECS and IMS jobs share: the id, type, status, times and the cloud's reason for a failure."""

    job_id: str
    job_type: str | None = None
    status: str = ""
    begin_time: datetime | None = None
    end_time: datetime | None = None
    error_code: str | None = None
    fail_reason: str | None = None

    _times = field_validator("begin_time", "end_time", mode="plain")(_time_or_none)
    _texts = field_validator("error_code", "fail_reason", mode="before")(_str_or_none)

    @property
    def succeeded(self) -> bool:
        return self.status == JobStatus.SUCCESS


class Job(_CloudJob):
    entities: JobEntities = Field(default_factory=JobEntities)

    _entities = field_validator("entities", mode="before")(_entities_dict)

    @property
    def server_id(self) -> str | None:
        """The job's server, or the first sub-job's when only sub-jobs name it (createServer-style jobs)."""
        if self.entities.server_id:
            return self.entities.server_id
        return next((s.entities.server_id for s in self.sub_jobs if s.entities.server_id), None)

    @property
    def sub_jobs(self) -> list[SubJob]:
        return self.entities.sub_jobs

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.SUCCESS, JobStatus.FAIL)

    @property
    def failed(self) -> bool:
        return self.status == JobStatus.FAIL

    def failure_messages(self) -> list[str]:
        """Every reason the cloud gave for a failure, job first, then each sub-job; duplicates dropped."""
        found: list[str] = []

        def add(code: str | None, reason: str | None) -> None:
            text = ": ".join(part for part in (code, reason) if part)
            if text and text not in found:
                found.append(text)

        add(self.error_code, self.fail_reason)
        for sub in self.sub_jobs:
            add(sub.error_code, sub.fail_reason)
            add(None, sub.entities.errorcode_message)
        return found


class ImageJobEntities(_Response):
    """§18: `image_id`/`image_name` on SUCCESS; whether they and `process_percent` come while RUNNING is [U]."""

    image_id: str | None = None
    image_name: str | None = None
    current_task: str | None = None
    process_percent: float | None = None

    _texts = field_validator("image_id", "image_name", "current_task", mode="before")(_str_or_none)

    @field_validator("process_percent", mode="before")
    @classmethod
    def _percent(cls, value: Any) -> Any:
        return None if value in (None, "") else value


class ImageJob(_CloudJob):
    """An IMS job (`GET /v1/cloudimages/job/{job_id}`): status SUCCESS | FAIL | RUNNING | INIT."""

    entities: ImageJobEntities = Field(default_factory=ImageJobEntities)

    _entities = field_validator("entities", mode="before")(_entities_dict)

    @property
    def failed(self) -> bool:
        """FAIL, or an empty status: Terraform's IMS client treats both as an error (reference §18)."""
        return self.status in (JobStatus.FAIL, "")

    @property
    def image_id(self) -> str | None:
        return self.entities.image_id


# ---------------------------------------------------------------------------------------------------------- requests


class ChangeOsMetadata(BaseModel):
    """System-disk metadata of a change (v1 keys; v1 has no user_data)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    system_encrypted: Literal["0", "1"] | None = Field(default=None, alias="__system__encrypted")
    system_cmkid: str | None = Field(default=None, alias="__system__cmkid", min_length=36, max_length=36)
    byol: Literal["true"] | None = Field(default=None, alias="BYOL")

    @model_validator(mode="after")
    def _cmk_needs_encryption(self) -> ChangeOsMetadata:
        if self.system_cmkid and self.system_encrypted != "1":
            raise ValueError("__system__cmkid (a KMS key ID) is only used with __system__encrypted = '1'.")
        return self

    def to_wire(self) -> dict[str, str]:
        return self.model_dump(by_alias=True, exclude_none=True)


class ChangeOsOption(BaseModel):
    """The body of a change-OS request, refusing anything the cloud would refuse.

    `adminpass` is a SecretStr and errors never echo inputs (hide_input_in_errors, and the raw password is wrapped
    before any validation runs), so neither repr() nor a ValidationError can leak it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True, populate_by_name=True)

    imageid: str
    adminpass: SecretStr | None = None
    keyname: str | None = None
    userid: str | None = None
    mode: Literal["withStopServer"] | None = None
    metadata: ChangeOsMetadata | None = None
    is_auto_pay: Literal["true", "false"] | None = Field(default=None, alias="isAutoPay")
    os_type: str | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _wrap_password_first(cls, data: Any) -> Any:
        """Replace the raw password in place: pydantic reports the original input object in `errors()`, so this
        is what keeps the plain text out of every error (the dict is the call's own kwargs, or the caller's)."""
        if isinstance(data, dict) and isinstance(data.get("adminpass"), str):
            data["adminpass"] = SecretStr(data["adminpass"]) if data["adminpass"] else None
        return data

    @field_validator("adminpass", mode="before")
    @classmethod
    def _secret(cls, value: Any) -> Any:
        """Unwrap for pydantic's own SecretStr validation (which re-wraps it); empty means "no password"."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return value or None

    @field_validator("imageid")
    @classmethod
    def _imageid_uuid(cls, value: str) -> str:
        try:
            uuid.UUID(value)
        except ValueError:
            raise ValueError(
                "imageid must be an image ID (a UUID such as 67f433d8-ed0e-4321-a8a2-a71838539e09); "
                "look the image up by name first."
            ) from None
        if len(value) != 36:
            raise ValueError("imageid must be a UUID in its usual 8-4-4-4-12 form.")
        return value

    @field_validator("keyname", "userid")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @model_validator(mode="after")
    def _login_rules(self) -> ChangeOsOption:
        if self.adminpass is None and self.keyname is None:
            raise ValueError("Choose a login method: give either a key pair (keyname) or an admin password.")
        if self.adminpass is not None and self.keyname is not None:
            raise ValueError("Give either a key pair (keyname) or an admin password, not both.")
        if self.keyname is not None and self.userid is None:
            raise ValueError("A key pair login needs userid (HUAWEICLOUD_USER_ID); set it and try again.")
        windows = (self.os_type or "").strip().lower() == "windows"
        if windows and self.keyname is not None:
            raise ValueError("Windows servers support only the admin password login, not a key pair.")
        if self.adminpass is not None:
            problems = password_problems(self.adminpass.get_secret_value(), os_type=self.os_type or "Linux")
            if problems:
                raise ValueError(" ".join(problems))
        return self

    def to_body(self, *, cloud_init: bool = False) -> bytes:
        """Exactly the bytes the official SDK sends (simplejson defaults: `", "`, `": "`, ensure_ascii).

        Key order follows the SDK models: v1 puts mode before metadata, the Cloud-Init (v2) model the other way.
        """
        middle = ("metadata", "mode") if cloud_init else ("mode", "metadata")
        values: dict[str, Any] = {
            "adminpass": self.adminpass.get_secret_value() if self.adminpass else None,
            "keyname": self.keyname,
            "userid": self.userid,
            "imageid": self.imageid,
            "mode": self.mode,
            "metadata": self.metadata.to_wire() if self.metadata else None,
            "isAutoPay": self.is_auto_pay,
        }
        order = ("adminpass", "keyname", "userid", "imageid", *middle, "isAutoPay")
        inner = {key: values[key] for key in order if values[key] is not None}
        return json.dumps({"os-change": inner}, separators=(", ", ": "), ensure_ascii=True).encode("ascii")


def _sdk_json(body: Any) -> bytes:
    return json.dumps(body, separators=(", ", ": "), ensure_ascii=True).encode("ascii")


def create_image_body(server_id: str, name: str, description: str, tags: Mapping[str, str]) -> bytes:
    """`POST /v2/cloudimages/action` as the SDK sends it (keys in model order, reference §16)."""
    body: dict[str, Any] = {}
    if description:
        body["description"] = description
    if tags:
        body["image_tags"] = [{"key": key, "value": value} for key, value in tags.items()]
    body["instance_id"] = server_id
    body["name"] = name
    return _sdk_json(body)


def start_body(server_ids: list[str]) -> bytes:
    return _sdk_json({"os-start": {"servers": [{"id": sid} for sid in server_ids]}})


def stop_body(server_ids: list[str], stop_type: StopType) -> bytes:
    """`{"os-stop": {"servers": [{"id": ..}], "type": "SOFT"}}` in the SDK's serialisation."""
    body = {"os-stop": {"servers": [{"id": sid} for sid in server_ids], "type": StopType(stop_type).value}}
    return json.dumps(body, separators=(", ", ": "), ensure_ascii=True).encode("ascii")
