"""IMS on the simulated cloud: a private image from a server's system disk, its job, deletion and tags.

Refusals follow the IMS error table (reference §16, §19): IMG.0002/0003 name, IMG.0004 description, IMG.0005 no
such ECS, IMG.0008 not stopped, IMG.0009 duplicate name, IMG.0010 tasks in progress, IMG.0015 quota, IMG.0027 no
such image, IMG.0090 image being created, IMG.0094 public image, IMG.0115/0116 tags. A friend of `SimState`: it
uses the state's event heap, timing and id generator.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandbox.simulator.bodies import json_object
from sandbox.simulator.catalogue import Image
from sandbox.simulator.clock import iso_millis
from sandbox.simulator.errors import SimError
from sandbox.simulator.faults import FailImageJob
from sandbox.simulator.state import Job, Server, SimState

JOB_TYPE = "imsCreateImageByInstance"
NAME = re.compile(r"^[A-Za-z0-9\-._ \u4e00-\u9fa5]+$")
TAG_KEY = re.compile(r"^[A-Za-z0-9_\-\u4e00-\u9fa5]+$")
TAG_VALUE = re.compile(r"^[A-Za-z0-9_\-.\u4e00-\u9fa5]*$")
MAX_TAGS = 10
# The SDK's CreateImageRequestBody fields; anything else is a client bug, refused as a bad format.
CREATE_KEYS = frozenset(
    [
        "data_images",
        "description",
        "enterprise_project_id",
        "image_tags",
        "instance_id",
        "name",
        "tags",
        "max_ram",
        "min_ram",
        "os_version",
        "image_url",
        "min_disk",
        "is_config",
        "cmk_id",
        "type",
        "is_quick_import",
        "architecture",
        "volume_id",
        "hw_firmware_type",
    ]
)


def _bad(code: str, message: str, status: int = 400) -> SimError:
    return SimError(status, code, message)


@dataclass(frozen=True)
class CreateImage:
    name: str
    instance_id: str
    description: str
    tags: tuple[str, ...]  # "key=value"


def _tag(item: Any, where: str) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not isinstance(item.get("value"), str):
        raise _bad("IMG.0115", f'Invalid tag in {where}: each tag is {{"key": "...", "value": "..."}}.')
    key, value = item["key"], item["value"]
    if not 1 <= len(key) <= 36 or not TAG_KEY.match(key):
        raise _bad("IMG.0115", f"Invalid tag key {key!r}: 1-36 letters, digits, _ or -.")
    if len(value) > 43 or not TAG_VALUE.match(value):
        raise _bad("IMG.0115", f"Invalid tag value {value!r} for {key}: up to 43 letters, digits, _ - or .")
    return f"{key}={value}"


def _tags(items: Any, where: str) -> list[str]:
    if not isinstance(items, list):
        raise _bad("IMG.0001", f"The request message format is invalid: {where} must be a list.")
    return [_tag(item, where) for item in items]


def parse_create(body: bytes) -> CreateImage:
    if not body.strip():
        raise _bad("IMG.0007", "The request body is empty.")
    data = json_object(body)
    unknown = sorted(set(data) - CREATE_KEYS)
    if unknown:
        raise _bad("IMG.0001", f"The request message format is invalid: unknown field(s) {', '.join(unknown)}.")
    instance_id = data.get("instance_id")
    if not isinstance(instance_id, str) or not instance_id:
        raise _bad("IMG.0001", "The request message format is invalid: instance_id (the ECS) is required here.")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("IMG.0003", "The image name format is invalid: name is required.")
    if len(name) > 128:
        raise _bad("IMG.0002", "The image name contains more than 128 characters.")
    if name != name.strip() or not NAME.match(name):
        raise _bad(
            "IMG.0003",
            f"The image name format is invalid: {name!r}. Use letters, digits, spaces, -, _ and . (no leading or "
            "trailing space).",
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise _bad("IMG.0001", "The request message format is invalid: description must be a string.")
    if len(description) > 1024:
        raise _bad("IMG.0004", "The description contains more than 1024 characters.")
    if any(ch in description for ch in "\r<>"):
        raise _bad("IMG.0054", "The description is invalid: no carriage return, < or >.")
    if "tags" in data and "image_tags" in data:
        raise _bad("IMG.0001", "The request message format is invalid: use either tags or image_tags, not both.")
    if "image_tags" in data:
        tags = _tags(data["image_tags"], "image_tags")
    else:
        old = data.get("tags", [])
        if not isinstance(old, list) or not all(isinstance(t, str) and "." in t for t in old):
            raise _bad("IMG.0115", 'Invalid tags: the old format is a list of "key.value" strings.')
        tags = [_tag(dict(zip(("key", "value"), t.split(".", 1), strict=True)), "tags") for t in old]
    if len(tags) > MAX_TAGS:
        raise _bad("IMG.0116", f"Too many tags: at most {MAX_TAGS} per image.")
    return CreateImage(name, instance_id, description, tuple(dict.fromkeys(tags)))


def _own(state: SimState, image: Image) -> bool:
    return image.owner == state.fixtures.simulator.project_id and image.imagetype == "private"


def create_image(state: SimState, request: CreateImage) -> str:
    """Refuse as IMS does, else a private image (queued) and its job; the image is active when the job ends."""
    server = state.servers.get(request.instance_id)
    if server is None:
        raise _bad("IMG.0005", f"The ECS does not exist: {request.instance_id}.")
    if server.busy:
        raise _bad(
            "IMG.0010",
            f"The ECS cannot be used to create an image because it has in-progress tasks: "
            f"{server.name} is busy ({server.status}).",
        )
    running_ok = state.switches.image_from_running == "allow" and server.vm_state == "active"
    if server.vm_state != "stopped" and not running_ok:
        raise _bad(
            "IMG.0008",
            f"The ECS cannot be used to create images because it is not in stopped state: "
            f"{server.name} is {server.status}. Stop the ECS and try again.",
        )
    system = state.system_volume(server)
    if system is None:
        raise _bad("IMG.0119", f"The ECS {server.name} has no system disk.")
    if system.size > 1024:
        raise _bad("IMG.0111", f"The system disk of {server.name} is larger than 1 TB: create a full-ECS image.")
    mine = [i for i in state.catalogue.images if _own(state, i)]
    if len(mine) >= state.switches.image_quota:
        raise _bad(
            "IMG.0015",
            f"The private image quota is used up ({len(mine)} of {state.switches.image_quota}). "
            "Delete private images you no longer need, or ask for a higher quota.",
        )
    if any(i.name == request.name for i in mine):
        raise _bad("IMG.0009", f"The image name already exists: {request.name}.")
    source = state.images.get(server.image_id)
    now = state.now()
    image = Image(
        id=str(uuid.UUID(int=state.id_rng.getrandbits(128), version=4)),
        name=request.name,
        status="queued",
        os_type=source.os_type if source else server.metadata.get("os_type", "Linux"),
        platform=source.platform if source else "Other",
        os_version=source.os_version if source else "",
        os_bit=source.os_bit if source else "64",
        min_disk=system.size,
        min_ram=source.min_ram if source else 0,
        support_fc_inject=source.support_fc_inject if source else None,  # the guest is the same: so is Cloud-Init
        imagetype="private",
        visibility="private",
        arm=source.arm if source else False,
        firmware=source.firmware if source else None,
        support_kvm=source.support_kvm if source else True,
        support_xen=source.support_xen if source else False,
        owner=state.fixtures.simulator.project_id,
        created=now,
        size=system.size * 1024**3 // 8,
        tags=request.tags,
        data_origin=f"instance,{server.id}",
        parent_image=server.image_id,
        description=request.description,
    )
    state.own_catalogue().put(image)
    state.image_os[image.id] = server.os_image_id or server.image_id
    job = Job(
        job_id=state._new_job_id(),
        job_type=JOB_TYPE,
        begin_time=iso_millis(now),
        server_id=None,
        sub_jobs=[],
        created_at=now,
        image_id=image.id,
        image_name=image.name,
    )
    state.jobs[job.job_id] = job
    server.busy_job = job.job_id
    running_at = now + state._duration("job_init")
    work = state._duration("image_create")
    fail = state.faults.take_fail_image_job(server.id)
    done_at = running_at + (work / 2 if fail else work)
    job.work = (running_at, running_at + work)
    state._at(running_at, _running(state, job))
    state._at(done_at, _done(state, job, server, fail))
    return job.job_id


def _set_status(state: SimState, image_id: str, status: str) -> None:
    image = state.images.get(image_id)
    if image is not None:
        state.own_catalogue().put(dataclasses.replace(image, status=status))


def _running(state: SimState, job: Job) -> Callable[[float], None]:
    def run(_due: float) -> None:
        job.status = "RUNNING"
        assert job.image_id is not None
        _set_status(state, job.image_id, "saving")

    return run


def _done(state: SimState, job: Job, server: Server, fail: FailImageJob | None) -> Callable[[float], None]:
    def done(due: float) -> None:
        assert job.image_id is not None
        server.busy_job = None
        job.end_time, job.ended_at = iso_millis(due), due
        if fail is None:
            job.status = "SUCCESS"
            _set_status(state, job.image_id, "active")
            return
        job.status, job.error_code, job.fail_reason = "FAIL", fail.error_code, fail.fail_reason
        if state.switches.failed_image == "removed":
            state.own_catalogue().drop(job.image_id)
        else:
            _set_status(state, job.image_id, "killed")

    return done


def render_job(state: SimState, job: Job) -> dict[str, Any]:
    """The §18 shape: entities carry image_id/image_name on SUCCESS (and, when the switch says, while RUNNING)."""
    entities: dict[str, Any] = {}
    if job.status == "SUCCESS" or (job.status == "RUNNING" and state.switches.image_job_entities == "while_running"):
        entities = {"image_id": job.image_id, "image_name": job.image_name}
    if job.status == "RUNNING" and state.switches.image_job_entities == "while_running" and job.work:
        start, end = job.work
        share = (state.now() - start) / (end - start) if end > start else 1.0
        entities["process_percent"] = round(min(max(share, 0.0), 0.99) * 100, 1)
    return {
        "job_id": job.job_id,
        "job_type": job.job_type,
        "begin_time": job.begin_time,
        "end_time": job.end_time or None,
        "status": job.status,
        "error_code": job.error_code,
        "fail_reason": job.fail_reason,
        "entities": entities,
    }


def image_job(state: SimState, job_id: str) -> Job:
    """An image job by id; an unknown or expired id is IMG.0023 on the IMS path ([U]: the closest documented)."""
    try:
        job = state.get_job(job_id)
    except SimError:
        job = None
    if job is None or not job.job_type.startswith("ims"):
        raise _bad("IMG.0023", f"An exception occurred during the task query: no job {job_id}.")
    return job


def _image(state: SimState, image_id: str) -> Image:
    image = state.images.get(image_id)
    if image is None:
        raise _bad("IMG.0027", f"The image ID in the request does not exist: {image_id}.")
    return image


def check_delete_body(body: bytes) -> None:
    """The body is optional; when sent it is `{"delete_backup": true|false}` (full-ECS images only use it)."""
    if body.strip():
        data = json_object(body)
        if set(data) - {"delete_backup"} or not isinstance(data.get("delete_backup", False), bool):
            raise _bad("IMG.0001", 'The request message format is invalid: the body is {"delete_backup": bool}.')


def delete_image(state: SimState, image_id: str) -> None:
    """204 always for a deletable image; the image leaves the list a few seconds later (reference §19)."""
    image = state.images.get(image_id)
    if image is None:
        return  # "always returns 204": the caller confirms by listing
    if image.imagetype in ("gold", "market"):
        raise _bad("IMG.0094", f"A public image cannot be deleted: {image.name}.")
    if not _own(state, image):
        raise _bad("IMG.0092", f"Only the owner can delete the image {image.name}.")
    if image.status in ("queued", "saving"):
        raise _bad("IMG.0090", f"The image {image.name} is being created and cannot be deleted.")

    def gone(_due: float) -> None:
        if image_id in state.images:
            state.own_catalogue().drop(image_id)

    state._at(state.now() + state._duration("image_delete"), gone)


def image_tags(state: SimState, image_id: str) -> list[dict[str, str]]:
    return [dict(zip(("key", "value"), tag.split("=", 1), strict=True)) for tag in _image(state, image_id).tags]


def _retag(state: SimState, image: Image, tags: dict[str, str]) -> None:
    if len(tags) > MAX_TAGS:
        raise _bad("IMG.0116", f"Too many tags: at most {MAX_TAGS} per image.")
    state.own_catalogue().put(dataclasses.replace(image, tags=tuple(f"{k}={v}" for k, v in tags.items())))


def tag_action(state: SimState, image_id: str, body: bytes) -> None:
    """`{"action": "create"|"delete", "tags": [...]}`: a key written again overwrites; a missing one is fine."""
    image = _image(state, image_id)
    data = json_object(body)
    action = data.get("action")
    if action not in ("create", "delete"):
        raise _bad("IMG.0001", 'The request message format is invalid: action must be "create" or "delete".')
    current = dict(t.split("=", 1) for t in image.tags)
    for tag in _tags(data.get("tags"), "tags") if action == "create" else []:
        key, value = tag.split("=", 1)
        current[key] = value
    if action == "delete":
        items = data.get("tags")
        if not isinstance(items, list) or not all(isinstance(t, dict) and isinstance(t.get("key"), str) for t in items):
            raise _bad("IMG.0115", 'Invalid tags: each tag to delete is {"key": "..."}.')
        for item in items:
            current.pop(item["key"], None)
    _retag(state, image, current)


def add_tag(state: SimState, image_id: str, body: bytes) -> None:
    image = _image(state, image_id)
    key, value = _tag(json_object(body).get("tag"), "tag").split("=", 1)
    current = dict(t.split("=", 1) for t in image.tags)
    current[key] = value
    _retag(state, image, current)


def delete_tag(state: SimState, image_id: str, key: str) -> None:
    image = _image(state, image_id)
    current = dict(t.split("=", 1) for t in image.tags)
    if key not in current:
        raise _bad("IMG.0115", f"The image {image.name} has no tag {key!r}.", 404)  # [U] code; 404 is documented
    del current[key]
    _retag(state, image, current)
