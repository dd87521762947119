"""`GET /v2/cloudimages` query strings: the documented filters, validated as IMS does, then answered from indexes.

Documented names (reference §20): each filter returns only what it names and filters combine (AND). Values IMS
enumerates are checked; `architecture` outside x86/arm is IMG.0212, an unknown `flavor_id` IMG.0192.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sandbox.simulator.catalogue import SORT_KEYS, Catalogue, Image
from sandbox.simulator.errors import SimError
from sandbox.simulator.fixtures import Switches
from sandbox.simulator.flavors import parse_flavor

INVALID = "IMG.0001"  # [U] the code for a bad query value is not documented; the simulator's choice
DOCUMENTED = frozenset(
    [
        "__isregistered", "__imagetype", "__whole_image", "__system__cmkid", "protected", "visibility", "owner", "id",
        "status", "name", "flavor_id", "container_format", "disk_format", "min_ram", "min_disk", "__os_bit",
        "__platform", "marker", "limit", "sort_key", "sort_dir", "__os_type", "tag", "member_status", "__support_kvm",
        "__support_xen", "__support_largememory", "__support_diskintensive", "__support_highperformance",
        "__support_xen_gpu_type", "__support_kvm_gpu_type", "__support_xen_hana", "__support_kvm_infiniband",
        "virtual_env_type", "enterprise_project_id", "created_at", "updated_at", "architecture",
    ]
)
ENUMS: dict[str, tuple[str, ...]] = {
    "__imagetype": ("gold", "private", "shared", "market"),
    "status": ("queued", "saving", "deleted", "killed", "active"),
    "__isregistered": ("true",),
    "virtual_env_type": ("FusionCompute", "DataImage", "Ironic", "IsoImage"),
    "__os_type": ("Linux", "Windows", "Other"),
    "__os_bit": ("32", "64"),
    "visibility": ("public", "private", "shared"),
    "protected": ("true", "false"),
    "__whole_image": ("true", "false"),
    "member_status": ("accepted", "rejected", "pending"),
    "__support_kvm": ("true", "false"),
    "__support_xen": ("true", "false"),
    "__support_largememory": ("true", "false"),
    "__support_diskintensive": ("true", "false"),
    "__support_highperformance": ("true", "false"),
    "__support_xen_hana": ("true", "false"),
    "__support_kvm_infiniband": ("true", "false"),
}
_TIME_OPS = ("gt", "gte", "lt", "lte", "eq", "neq")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$|^[0-9a-f]{32}$")


def _bad(message: str, code: str = INVALID) -> SimError:
    return SimError(400, code, message)


@dataclass(frozen=True)
class Page:
    ids: list[str]
    limit: int
    last: bool


def _time_filter(key: str, raw: str) -> tuple[str, float]:
    op, _, value = raw.partition(":")
    if op not in _TIME_OPS or not value:
        raise _bad(f"Invalid parameter {key}={raw!r}: use op:time with op one of {', '.join(_TIME_OPS)}.")
    try:
        moment = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise _bad(f"Invalid parameter {key}={raw!r}: the time must look like 2018-10-28T10:00:00Z.") from None
    return op, moment


def _compare(op: str, left: float, right: float) -> bool:
    return {
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
        "eq": left == right,
        "neq": left != right,
    }[op]


def _int(key: str, raw: str) -> str:
    if not raw.isdigit():
        raise _bad(f"Invalid parameter {key}={raw!r}: an integer is expected.")
    return str(int(raw))


def _flavor_ids(catalogue: Catalogue, raw: str) -> set[str]:
    """Public ECS images usable with the flavor: architecture, virtualization and, on ARM, UEFI."""
    flavor = parse_flavor(raw) if "," not in raw else None
    if flavor is None:
        raise _bad(f"The flavor {raw!r} is invalid or does not exist; give one flavor id.", "IMG.0192")
    arch = catalogue.ids_with("architecture", flavor.architecture)
    virt = catalogue.ids_with("__support_kvm" if flavor.kvm else "__support_xen", "true")
    ids = catalogue.ids_with("__imagetype", "gold") & catalogue.ids_with("virtual_env_type", "FusionCompute")
    ids = ids & arch & virt
    if flavor.arm:
        ids = {i for i in ids if catalogue.by_id[i].boot_firmware == "uefi"}
    return ids


def query(catalogue: Catalogue, params: Iterable[tuple[str, str]], switches: Switches) -> Page:
    """One page of ids for a query string; raises SimError for what IMS refuses."""
    seen: dict[str, str] = {}
    for key, value in params:
        if key in seen:
            raise _bad(f"Invalid parameter {key}: give it once.")
        seen[key] = value
    limit_raw = seen.pop("limit", "")
    high = switches.images_limit_max
    limit = 500 if limit_raw == "" else int(_int("limit", limit_raw))
    if not 1 <= limit <= high:
        raise _bad(f"Invalid parameter limit={limit_raw}: it must be between 1 and {high}.")
    marker = seen.pop("marker", "") or None
    if marker is not None and marker not in catalogue.by_id:
        raise _bad(f"Invalid parameter marker={marker!r}: no image has this id; page with the last id you got.")
    sort_key = seen.pop("sort_key", "created_at") or "created_at"
    if sort_key not in SORT_KEYS:
        raise _bad(f"Invalid parameter sort_key={sort_key!r}: use one of {', '.join(SORT_KEYS)}.")
    sort_dir = seen.pop("sort_dir", "desc") or "desc"
    if sort_dir not in ("asc", "desc"):
        raise _bad(f"Invalid parameter sort_dir={sort_dir!r}: use asc or desc.")
    unknown = sorted(k for k in seen if k not in DOCUMENTED)
    if unknown and switches.images_unknown_params == "refuse":
        raise _bad(f"Invalid parameter(s) {', '.join(unknown)}: not a filter of GET /v2/cloudimages.")
    sets: list[set[str]] = []
    checks: list[tuple[str, str, float]] = []
    for key, value in seen.items():
        if key in unknown or value == "":
            continue
        if key == "architecture":
            if value not in ("x86", "arm"):
                raise _bad(f"Invalid parameter architecture={value!r}: use x86 or arm.", "IMG.0212")
            if switches.architecture_filter == "ignore":
                continue
            if switches.architecture_filter == "refuse":
                raise _bad("Invalid parameter architecture: not supported in this region; filter on __support_arm.")
        elif key in ENUMS and value not in ENUMS[key]:
            raise _bad(f"Invalid parameter {key}={value!r}: use one of {', '.join(ENUMS[key])}.")
        if key in ("created_at", "updated_at"):
            op, moment = _time_filter(key, value)
            checks.append((key, op, moment))
            continue
        if key == "flavor_id":
            sets.append(_flavor_ids(catalogue, value))
            continue
        if key == "enterprise_project_id":
            if value == "all_granted_eps":
                continue
            if value != "0" and not _UUID.match(value):
                raise _bad(f"Invalid parameter enterprise_project_id={value!r}: use 0, a UUID or all_granted_eps.")
        if key in ("min_disk", "min_ram"):
            value = _int(key, value)
        sets.append(catalogue.ids_with(key, value))
    candidates: set[str] | None = None
    if sets:
        sets.sort(key=len)
        candidates = set(sets[0])
        for other in sets[1:]:
            candidates &= other
    if checks:
        pool: Iterable[Image] = (
            catalogue.images if candidates is None else (catalogue.by_id[i] for i in candidates)
        )
        # created_at and updated_at are the same for every simulated image
        candidates = {i.id for i in pool if all(_compare(op, i.created, moment) for _, op, moment in checks)}
    ids = catalogue.page(candidates, sort_key=sort_key, descending=sort_dir == "desc", marker=marker, limit=limit)
    return Page(ids, limit, len(ids) < limit)
