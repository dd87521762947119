"""The IMS image catalogue: the curated fixture images plus a seeded, realistic generated region catalogue.

A real region lists thousands of images: public (`gold`), this project's private ones, images shared from other
projects and market images; ECS system-disk images (`virtual_env_type=FusionCompute`) beside BMS (`Ironic`),
data-disk (`DataImage`) and ISO (`IsoImage`) images; x86 and ARM; BIOS and UEFI; some still `queued`/`saving`
or `killed`. Each image is rendered to JSON once; the few that change while the simulator runs (made from a
server, deleted or tagged) go through `Catalogue.put` / `Catalogue.drop` on the state's own copy.
"""

from __future__ import annotations

import bisect
import copy
import functools
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GOLD_OWNER = "1bed856811654c1cb661a6ca845ebc77"
MARKET_OWNER = "9f3c2b7a6d5e4f109a8b7c6d5e4f3a2b"
SHARING_PROJECTS = (
    "2c4e6a8b0d1f43e5a7c9e1b3d5f7a9c1",
    "3d5f7b9c1e2a44f6b8d0f2c4e6a8b0d2",
    "4e6a8c0d2f3b45a7c9e1a3d5f7b9c1e3",
)
CURATED_CREATED = datetime(2024, 6, 1, tzinfo=UTC).timestamp()
_OLDEST = datetime(2018, 1, 1, tzinfo=UTC).timestamp()
_NEWEST = datetime(2024, 5, 31, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Image:
    """One IMS image with the attributes the list API filters on (reference §6, §20)."""

    id: str
    name: str
    status: str = "active"
    os_type: str = "Linux"
    platform: str = "Other"
    os_version: str = ""
    os_bit: str = "64"
    min_disk: int = 40
    min_ram: int = 0
    max_ram: str = ""
    support_fc_inject: str | None = None
    imagetype: str = "gold"
    visibility: str = "public"
    virtual_env_type: str = "FusionCompute"
    arm: bool = False
    firmware: str | None = None  # hw_firmware_type; absent means BIOS
    support_kvm: bool = True
    support_xen: bool = False
    owner: str = GOLD_OWNER
    created: float = CURATED_CREATED
    size: int = 0
    disk_format: str = "zvhd2"
    whole_image: bool = False
    productcode: str = ""
    member_status: str | None = None
    tags: tuple[str, ...] = ()  # "key=value", as the `tag` filter writes them
    data_origin: str = ""  # "instance,<server id>" for an image made from a server (reference §19)
    parent_image: str = ""  # __originalimagename: the image the source server ran
    description: str = ""
    extra: tuple[tuple[str, str], ...] = field(default=())  # more `__support_*` flags, e.g. largememory

    @property
    def architecture(self) -> str:
        return "arm" if self.arm else "x86"

    @property
    def boot_firmware(self) -> str:
        return self.firmware or "bios"

    @property
    def ecs_system_image(self) -> bool:
        return self.virtual_env_type == "FusionCompute"


def iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def image_body(i: Image) -> dict[str, Any]:
    """ImageInfo as IMS sends it. No `architecture` key: the SDK's ImageInfo has none; `__support_arm` tells."""
    stamp = iso(i.created)
    body: dict[str, Any] = {
        "id": i.id,
        "name": i.name,
        "status": i.status,
        "visibility": i.visibility,
        "protected": i.imagetype in ("gold", "market"),
        "min_disk": i.min_disk,
        "min_ram": i.min_ram,
        "max_ram": i.max_ram,
        "size": i.size,
        "container_format": "bare",
        "disk_format": i.disk_format,
        "virtual_env_type": i.virtual_env_type,
        "owner": i.owner,
        "created_at": stamp,
        "updated_at": stamp,
        "self": f"/v2/images/{i.id}",
        "file": f"/v2/images/{i.id}/file",
        "schema": "/v2/schemas/image",
        "tags": list(i.tags),
        "__imagetype": i.imagetype,
        "__image_displayname": i.name,
        "__isregistered": "true",
        "__os_type": i.os_type,
        "__platform": i.platform,
        "__os_version": i.os_version,
        "__os_bit": i.os_bit,
        "__image_source_type": "uds",
        "__image_size": str(i.size),
        "__data_origin": i.data_origin,
        "__description": i.description,
        "__support_kvm": "true" if i.support_kvm else "false",
        "__support_xen": "true" if i.support_xen else "false",
        "__support_arm": "true" if i.arm else "false",
        "__lazyloading": "true",
        "__root_origin": "" if i.data_origin else "file",
        "__originalimagename": i.parent_image,
        "__backup_id": "",
        "__productcode": i.productcode,
        "__sequence_num": "",
        "__is_offshelved": "false",
        "__whole_image": "true" if i.whole_image else "false",
        "enterprise_project_id": "0",
    }
    if i.firmware is not None:
        body["hw_firmware_type"] = i.firmware
    if i.support_fc_inject is not None:
        body["__support_fc_inject"] = i.support_fc_inject
    if i.member_status is not None:
        body["member_status"] = i.member_status
    body.update(dict(i.extra))
    return body


# ---------------------------------------------------------------------------------------------- generation

# (platform, os_type, name, arm variant exists, uefi variant exists, min_disk)
_PUBLIC: list[tuple[str, str, str, bool, bool, int]] = [
    ("Ubuntu", "Linux", "Ubuntu 24.04 server 64bit", True, True, 40),
    ("Ubuntu", "Linux", "Ubuntu 22.04 server 64bit", True, True, 40),
    ("Ubuntu", "Linux", "Ubuntu 20.04 server 64bit", True, False, 40),
    ("Ubuntu", "Linux", "Ubuntu 18.04 server 64bit", True, False, 40),
    ("CentOS", "Linux", "CentOS 7.9 64bit", True, False, 40),
    ("CentOS", "Linux", "CentOS 7.6 64bit", True, False, 40),
    ("CentOS", "Linux", "CentOS 8.2 64bit", True, True, 40),
    ("CentOS", "Linux", "CentOS Stream 9 64bit", True, True, 40),
    ("EulerOS", "Linux", "EulerOS 2.9 64bit", True, False, 40),
    ("EulerOS", "Linux", "EulerOS 2.5 64bit", True, False, 40),
    ("EulerOS", "Linux", "Huawei Cloud EulerOS 2.0 Standard 64 bit", True, True, 40),
    ("EulerOS", "Linux", "Huawei Cloud EulerOS 1.1 CentOS 64bit", True, False, 40),
    ("Other", "Linux", "openEuler 22.03 LTS 64bit", True, True, 40),
    ("Other", "Linux", "openEuler 20.03 LTS SP3 64bit", True, False, 40),
    ("Debian", "Linux", "Debian 12.0.0 64bit", True, True, 40),
    ("Debian", "Linux", "Debian 11.1.0 64bit", True, False, 40),
    ("Debian", "Linux", "Debian 10.0.0 64bit", False, False, 40),
    ("Other", "Linux", "Rocky Linux 9.0 64bit", True, True, 40),
    ("Other", "Linux", "Rocky Linux 8.8 64bit", True, False, 40),
    ("Other", "Linux", "AlmaLinux 9.0 64bit", True, True, 40),
    ("Other", "Linux", "AlmaLinux 8.4 64bit", False, False, 40),
    ("Oracle Linux", "Linux", "Oracle Linux 8.4 64bit", False, False, 40),
    ("SUSE", "Linux", "SUSE Linux Enterprise Server 15 SP4 64bit", True, True, 40),
    ("SUSE", "Linux", "SUSE Linux Enterprise Server 12 SP5 64bit", False, False, 40),
    ("OpenSUSE", "Linux", "openSUSE 15.3 64bit", False, False, 40),
    ("Fedora", "Linux", "Fedora 36 64bit", False, False, 40),
    ("CoreOS", "Linux", "Fedora CoreOS 37 64bit", False, False, 40),
    ("RedHat", "Linux", "Red Hat Enterprise Linux 8.4 64bit", False, False, 40),
    ("Windows", "Windows", "Windows Server 2022 Datacenter 64bit English", False, True, 40),
    ("Windows", "Windows", "Windows Server 2022 Standard 64bit Chinese", False, True, 40),
    ("Windows", "Windows", "Windows Server 2019 Datacenter 64bit English", False, False, 40),
    ("Windows", "Windows", "Windows Server 2019 Standard 64bit Chinese", False, False, 40),
    ("Windows", "Windows", "Windows Server 2016 Datacenter 64bit English", False, False, 40),
    ("Windows", "Windows", "Windows Server 2012 R2 Standard 64bit English", False, False, 40),
]
_MARKET_APPS = (
    "WordPress",
    "LAMP",
    "LNMP",
    "Docker CE",
    "GitLab CE",
    "Jenkins",
    "MySQL 8.0",
    "PostgreSQL 15",
    "Redis 7",
    "Nginx",
    "Node.js 18",
    "Tomcat 9",
    "Magento",
    "Odoo 16",
    "Moodle",
    "Nextcloud",
    "Jupyter",
    "Kubernetes node",
    "Plesk",
    "cPanel",
)
_PRIVATE_ROLES = ("web", "app", "db", "cache", "batch", "proxy", "ci", "bastion", "etl", "api")
_SHARED_NAMES = ("golden", "hardened", "base", "cis-level1", "runtime", "ops-base")


@dataclass(frozen=True)
class _Kind:
    imagetype: str
    virtual_env_type: str = "FusionCompute"
    arm: bool = False
    firmware: str | None = None
    status: str = "active"
    windows: bool = False


# One of every kind first, so that even a small catalogue has each of them.
_EVERY_KIND = (
    _Kind("gold"),
    _Kind("gold", firmware="uefi"),
    _Kind("gold", arm=True, firmware="uefi"),
    _Kind("gold", windows=True),
    _Kind("gold", virtual_env_type="Ironic"),
    _Kind("gold", virtual_env_type="Ironic", arm=True, firmware="uefi"),
    _Kind("private"),
    _Kind("private", arm=True, firmware="uefi"),
    _Kind("private", arm=True, firmware="bios"),  # an ARM image registered with the wrong firmware
    _Kind("private", firmware="uefi"),
    _Kind("private", virtual_env_type="DataImage"),
    _Kind("private", virtual_env_type="IsoImage"),
    _Kind("private", status="queued"),
    _Kind("private", status="saving"),
    _Kind("private", status="killed"),
    _Kind("shared"),
    _Kind("shared", arm=True, firmware="uefi"),
    _Kind("shared", virtual_env_type="DataImage"),
    _Kind("shared", status="killed"),
    _Kind("market"),
    _Kind("market", arm=True, firmware="uefi"),
)
PRIVATE_QUOTA = 50  # private images per region (reference §16)


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _random_kind(rng: random.Random, private_left: int) -> _Kind:
    roll = rng.random()
    if roll < 0.30:
        env = "Ironic" if rng.random() < 0.12 else "FusionCompute"
        arm = rng.random() < 0.3
        return _Kind("gold", env, arm, "uefi" if arm or rng.random() < 0.25 else None, windows=rng.random() < 0.12)
    if roll < 0.35 and private_left > 0:
        env = rng.choices(("FusionCompute", "DataImage", "IsoImage"), (8, 2, 1))[0]
        status = rng.choices(("active", "queued", "saving", "killed"), (16, 1, 1, 1))[0]
        arm = rng.random() < 0.2
        return _Kind("private", env, arm, "uefi" if arm else rng.choice((None, None, "bios", "uefi")), status)
    if roll < 0.68:
        env = rng.choices(("FusionCompute", "DataImage", "IsoImage", "Ironic"), (12, 2, 1, 1))[0]
        status = rng.choices(("active", "queued", "saving", "killed"), (30, 1, 1, 1))[0]
        arm = rng.random() < 0.2
        return _Kind("shared", env, arm, "uefi" if arm else None, status, windows=rng.random() < 0.05)
    arm = rng.random() < 0.2
    return _Kind("market", "FusionCompute", arm, "uefi" if arm else None, windows=rng.random() < 0.08)


def _make(rng: random.Random, kind: _Kind, project_id: str, n: int) -> Image:
    if kind.windows and kind.arm:  # no Windows image for ARM
        kind = _Kind(kind.imagetype, kind.virtual_env_type, False, None, kind.status, True)
    pool = [p for p in _PUBLIC if (p[1] == "Windows") == kind.windows and (p[3] or not kind.arm)]
    platform, os_type, base, _, _, min_disk = rng.choice(pool)
    suffix = " (ARM)" if kind.arm else ""
    created = rng.uniform(_OLDEST, _NEWEST)
    stamp = datetime.fromtimestamp(created, UTC)
    fc_inject = "true" if os_type == "Windows" or rng.random() < 0.35 else None
    size = rng.randrange(1, 12) * 1024**3
    owner, visibility, productcode, member = GOLD_OWNER, "public", "", None
    tags: tuple[str, ...] = ()
    os_version = base + suffix
    if kind.imagetype == "gold":
        name = base + suffix
        if kind.virtual_env_type == "Ironic":
            name = f"{base} for BareMetal{suffix}"
        elif rng.random() < 0.6:  # older builds of the same public image stay listed with a date
            name = f"{base}{suffix} {stamp:%Y%m%d}"
    elif kind.imagetype == "market":
        app = rng.choice(_MARKET_APPS)
        name = f"{app} on {base}{suffix} | v{rng.randrange(1, 9)}.{rng.randrange(0, 20)}"
        owner, productcode = MARKET_OWNER, f"{rng.getrandbits(40):010x}"
    elif kind.imagetype == "private":
        role = rng.choice(_PRIVATE_ROLES)
        name = f"{role}-{base.split()[0].lower()}-{stamp:%Y%m%d}-{n:04d}"
        owner, visibility = project_id, "private"
        if rng.random() < 0.3:
            name = f"bak-{role}{rng.randrange(1, 20):02d}-{stamp:%Y%m%dT%H%M%SZ}"
            tags = ("chatops=backup",)
    else:
        owner, visibility = rng.choice(SHARING_PROJECTS), "shared"
        name = f"{rng.choice(_SHARED_NAMES)}-{base.split()[0].lower()}{suffix.strip().lower()}-{stamp:%Y%m}-{n:04d}"
        member = rng.choices(("accepted", "pending", "rejected"), (8, 1, 1))[0]
    disk_format = "zvhd2"
    if kind.virtual_env_type == "IsoImage":
        name, disk_format, fc_inject = f"{name}-iso", "iso", None
    elif kind.virtual_env_type == "DataImage":
        name, fc_inject, os_type, platform, os_version = f"{name}-data", None, "Other", "Other", ""
    return Image(
        id=_uuid(rng),
        name=name,
        status=kind.status,
        os_type=os_type,
        platform=platform,
        os_version=os_version,
        min_disk=min_disk if kind.virtual_env_type != "DataImage" else 10,
        min_ram=2048 if os_type == "Windows" else rng.choice((0, 0, 1024)),
        support_fc_inject=fc_inject,
        imagetype=kind.imagetype,
        visibility=visibility,
        virtual_env_type=kind.virtual_env_type,
        arm=kind.arm,
        firmware=kind.firmware,
        support_kvm=True,
        support_xen=not kind.arm and kind.firmware != "uefi" and rng.random() < 0.3,
        owner=owner,
        created=created,
        size=size,
        disk_format=disk_format,
        productcode=productcode,
        member_status=member,
        tags=tags,
        extra=(("__support_largememory", "true"),) if rng.random() < 0.05 else (),
    )


def generate(size: int, seed: int, project_id: str) -> list[Image]:
    """`size` images, the same for the same seed: one of every kind first, then a realistic mix."""
    rng = random.Random(f"catalogue-{seed}")
    images: list[Image] = []
    private = 0
    for n in range(size):
        kind = _EVERY_KIND[n] if n < len(_EVERY_KIND) else _random_kind(rng, PRIVATE_QUOTA - 10 - private)
        private += kind.imagetype == "private"
        images.append(_make(rng, kind, project_id, n))
    return images


# ---------------------------------------------------------------------------------------------- the index

SORT_KEYS = ("name", "container_format", "disk_format", "status", "id", "size", "created_at")


def _sort_key(key: str, image: Any) -> tuple[Any, str]:
    return (_sort_value(image, key), image.id)


def _sort_key_of(by_id: dict[str, Image], key: str, image_id: str) -> tuple[Any, str]:
    return _sort_key(key, by_id[image_id])


def _sort_value(image: Image, key: str) -> Any:
    if key == "created_at":
        return image.created
    if key == "container_format":
        return "bare"
    return getattr(image, key)


def index_values(image: Image) -> dict[str, str]:
    """The equality-filterable attributes, as the query string writes them."""
    values = {
        "id": image.id,
        "name": image.name,
        "status": image.status,
        "__imagetype": image.imagetype,
        "__isregistered": "true",
        "visibility": image.visibility,
        "owner": image.owner,
        "virtual_env_type": image.virtual_env_type,
        "architecture": image.architecture,
        "__os_type": image.os_type,
        "__os_bit": image.os_bit,
        "__platform": image.platform,
        "container_format": "bare",
        "disk_format": image.disk_format,
        "min_disk": str(image.min_disk),
        "min_ram": str(image.min_ram),
        "protected": "true" if image.imagetype in ("gold", "market") else "false",
        "__whole_image": "true" if image.whole_image else "false",
        "__support_kvm": "true" if image.support_kvm else "false",
        "__support_xen": "true" if image.support_xen else "false",
        "enterprise_project_id": "0",
    }
    if image.member_status is not None:
        values["member_status"] = image.member_status
    values.update(dict(image.extra))
    return values


@dataclass
class Catalogue:
    """Images with precomputed orderings and equality indexes: a filter is a set intersection, not a scan."""

    images: list[Image]
    by_id: dict[str, Image] = field(init=False)
    encoded: dict[str, bytes] = field(init=False)
    index: dict[str, dict[str, set[str]]] = field(init=False)
    tags: dict[str, set[str]] = field(init=False)
    order: dict[str, list[str]] = field(init=False)  # ascending ids per sort key
    rank: dict[str, dict[str, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {image.id: image for image in self.images}
        self.encoded = {image.id: json.dumps(image_body(image)).encode() for image in self.images}
        self.index, self.tags = {}, {}
        for image in self.images:
            for key, value in index_values(image).items():
                self.index.setdefault(key, {}).setdefault(value, set()).add(image.id)
            for tag in image.tags:
                self.tags.setdefault(tag, set()).add(image.id)
        self.order, self.rank = {}, {}
        for key in SORT_KEYS:
            ids = [i.id for i in sorted(self.images, key=functools.partial(_sort_key, key))]
            self.order[key] = ids
            self.rank[key] = {image_id: n for n, image_id in enumerate(ids)}

    def __len__(self) -> int:
        return len(self.images)

    def copy(self) -> Catalogue:
        """An independent copy to change: built catalogues are cached and shared between simulators."""
        twin = copy.copy(self)
        twin.images = list(self.images)
        twin.by_id = dict(self.by_id)
        twin.encoded = dict(self.encoded)
        twin.index = {key: {value: set(ids) for value, ids in values.items()} for key, values in self.index.items()}
        twin.tags = {tag: set(ids) for tag, ids in self.tags.items()}
        twin.order = {key: list(ids) for key, ids in self.order.items()}
        twin.rank = {key: dict(ranks) for key, ranks in self.rank.items()}
        return twin

    def put(self, image: Image) -> None:
        """Add an image, or replace the one with its id (a new status, new tags): O(images) per call."""
        if image.id in self.by_id:
            self.drop(image.id)
        self.images.append(image)
        self.by_id[image.id] = image
        self.encoded[image.id] = json.dumps(image_body(image)).encode()
        for key, value in index_values(image).items():
            self.index.setdefault(key, {}).setdefault(value, set()).add(image.id)
        for tag in image.tags:
            self.tags.setdefault(tag, set()).add(image.id)
        for key in SORT_KEYS:
            order = self.order[key]
            of_id = functools.partial(_sort_key_of, self.by_id, key)
            at = bisect.bisect_left(order, _sort_key(key, image), key=of_id)
            order.insert(at, image.id)
            self._rerank(key, at)

    def drop(self, image_id: str) -> None:
        image = self.by_id.pop(image_id)
        self.images.remove(image)
        del self.encoded[image_id]
        for key, value in index_values(image).items():
            self.index[key][value].discard(image_id)
        for tag in image.tags:
            self.tags[tag].discard(image_id)
        for key in SORT_KEYS:
            at = self.rank[key].pop(image_id)
            del self.order[key][at]
            self._rerank(key, at)

    def _rerank(self, key: str, start: int) -> None:
        order, rank = self.order[key], self.rank[key]
        for n in range(start, len(order)):
            rank[order[n]] = n

    def ids_with(self, key: str, value: str) -> set[str]:
        if key == "tag":
            return self.tags.get(value, set())
        return self.index.get(key, {}).get(value, set())

    def page(
        self,
        candidates: set[str] | None,
        *,
        sort_key: str = "created_at",
        descending: bool = True,
        marker: str | None = None,
        limit: int = 500,
    ) -> list[str]:
        """Ids of one page in the asked order, after `marker` (an image id, which need not match the filters)."""
        order, rank = self.order[sort_key], self.rank[sort_key]
        total = len(order)
        if candidates is not None and len(candidates) * 8 < total:
            ranked = sorted(candidates, key=rank.__getitem__, reverse=descending)
            if marker is not None:
                at = rank[marker]
                ranked = [i for i in ranked if (rank[i] < at if descending else rank[i] > at)]
            return ranked[:limit]
        start = 0 if marker is None else (total - rank[marker] if descending else rank[marker] + 1)
        walk = order[::-1] if descending else order
        if candidates is None:
            return walk[start : start + limit]
        out: list[str] = []
        for image_id in walk[start:] if start else walk:
            if image_id in candidates:
                out.append(image_id)
                if len(out) == limit:
                    break
        return out


_CACHE: dict[tuple[Any, ...], Catalogue] = {}


def build_catalogue(curated: list[Image], *, size: int, seed: int, project_id: str) -> Catalogue:
    """Curated images first, then `size` generated ones; cached, since neither changes while a process runs."""
    key = (tuple(curated), size, seed, project_id)
    found = _CACHE.get(key)
    if found is None:
        curated_ids = {i.id for i in curated}
        generated = [i for i in generate(size, seed, project_id) if i.id not in curated_ids]
        found = Catalogue([*curated, *generated])
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[key] = found
    return found
