"""The simulated cloud: servers, images, key pairs, volumes and jobs, with the state machine and job timing.

Time is lazy: every operation schedules its future transitions on a heap, and `advance()` (called before each
request) applies the ones that are due. No background task runs, so a seeded run is deterministic and an idle
simulator costs nothing.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from sandbox.simulator.catalogue import CURATED_CREATED, Catalogue, Image, build_catalogue
from sandbox.simulator.clock import Clock, iso_millis, iso_seconds
from sandbox.simulator.errors import SimError, bad_request
from sandbox.simulator.faults import FailJob, FaultBook, HoldJobs
from sandbox.simulator.fixtures import Fixtures, ImageFixture, KeyPairFixture, ServerFixture, Switches, Timing
from sandbox.simulator.flavors import Flavor, parse_flavor
from sandbox.simulator.imagequery import Page, query
from sandbox.simulator.passwords import password_problem

JOB_RETENTION = 86_400.0  # finished jobs disappear after a day (HW-0901), scaled by speed
PAYMENT_RETENTION = 14 * 86_400.0  # an unpaid order's job is deleted after 14 days (HW-0901)
REBUILD_TASKS = {"rebuilding", "rebuild_block_device_mapping", "rebuild_spawning"}
_VM_STATE_OF_STATUS = {"ACTIVE": "active", "SHUTOFF": "stopped", "ERROR": "error"}
_POWER_OF_VM_STATE = {"active": 1, "stopped": 4, "error": 4}


def status_for(vm_state: str, task_state: str | None) -> str:
    """The `status` the ECS API shows for a vm_state/task_state pair (reference §5 table, HW-0802)."""
    if vm_state == "building":
        return "BUILD"
    if vm_state == "active":
        if task_state in {"rebooting", "reboot_pending", "reboot_started"}:
            return "REBOOT"
        if task_state in {"rebooting_hard", "reboot_pending_hard", "reboot_started_hard"}:
            return "HARD_REBOOT"
        if task_state in REBUILD_TASKS:
            return "REBUILD"
        if task_state == "migrating":
            return "MIGRATING"
        return "ACTIVE" if task_state in {None, "powering-off", "deleting"} else "UNKNOWN"
    if vm_state == "stopped":
        if task_state in {"resize_prep", "resize_migrating", "resize_migrated", "resize_finish"}:
            return "RESIZE"
        if task_state in REBUILD_TASKS:
            return "REBUILD"
        return "SHUTOFF" if task_state in {None, "powering-on", "deleting"} else "UNKNOWN"
    if vm_state == "resized":
        return {"resize_reverting": "REVERT_RESIZE", None: "VERIFY_RESIZE"}.get(task_state, "UNKNOWN")
    if vm_state == "error":
        if task_state in REBUILD_TASKS:
            return "REBUILD"
        return "ERROR" if task_state in {None, "deleting"} else "UNKNOWN"
    if vm_state == "deleted" and task_state is None:
        return "DELETED"
    if vm_state in {"shelved", "shelved_offloaded"}:
        return vm_state.upper()
    return "UNKNOWN"


@dataclass
class Volume:
    id: str
    name: str
    size: int
    boot_index: str
    device: str
    volume_type: str
    server_id: str
    availability_zone: str
    created: float

    @property
    def bootable(self) -> bool:
        return self.boot_index == "0"


@dataclass
class Server:
    id: str
    name: str
    vm_state: str
    task_state: str | None
    power_state: int
    locked: bool
    image_id: str
    metadata: dict[str, str]
    volume_ids: list[str]
    flavor: str
    key_name: str | None
    ip: str
    availability_zone: str
    created: float
    updated: float
    failed_change: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    fault: dict[str, Any] | None = None
    busy_job: str | None = None
    # What the guest would now accept at login: a key pair name, or the SHA-256 of the admin password (never the
    # password itself), so tests can prove the password reached the cloud without the simulator keeping it.
    login_keyname: str | None = None
    login_password_sha256: str | None = None
    # The image whose OS the system disk holds: after a change to a backup image, the image the backup was made
    # from, so a test can prove a rollback round trip (the ECS itself shows the backup's id, as the real one does).
    os_image_id: str = ""

    @property
    def status(self) -> str:
        return status_for(self.vm_state, self.task_state)

    @property
    def busy(self) -> bool:
        return self.busy_job is not None or self.task_state is not None


@dataclass
class SubJob:
    job_id: str
    job_type: str
    server_id: str
    begin_time: str
    status: str = "INIT"
    end_time: str = ""
    error_code: str | None = None
    fail_reason: str | None = None


@dataclass
class Job:
    job_id: str
    job_type: str
    begin_time: str
    server_id: str | None
    sub_jobs: list[SubJob]
    status: str = "INIT"
    end_time: str = ""
    error_code: str | None = None
    fail_reason: str | None = None
    ended_at: float | None = None
    created_at: float = 0.0
    # image-creation jobs only: the image, and when its work runs (for process_percent)
    image_id: str | None = None
    image_name: str | None = None
    work: tuple[float, float] | None = None


@dataclass(frozen=True)
class ChangeOs:
    """A validated `os-change` body. The password is a SecretStr and is dropped once checked."""

    imageid: str
    adminpass: SecretStr | None = None
    keyname: str | None = None
    userid: str | None = None
    mode: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class SimState:
    """Everything the simulated cloud knows; mutated only through its methods."""

    fixtures: Fixtures
    clock: Clock
    faults: FaultBook
    speed: float = 1.0
    seed: int = 0
    servers: dict[str, Server] = field(default_factory=dict)
    catalogue_size: int | None = None
    images: dict[str, Image] = field(default_factory=dict)
    keypairs: dict[tuple[str, str], KeyPairFixture] = field(default_factory=dict)
    volumes: dict[str, Volume] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    image_os: dict[str, str] = field(default_factory=dict)  # image made from a server -> the OS image it holds
    owns_catalogue: bool = False
    _events: list[tuple[float, int, Callable[[float], None]]] = field(default_factory=list, repr=False)
    _seq: itertools.count[int] = field(default_factory=itertools.count, repr=False)

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError("speed must be > 0 (e.g. 1 for real time, 60 to make a minute last a second)")
        self.timing_rng = random.Random(f"timing-{self.seed}")
        self.id_rng = random.Random(f"ids-{self.seed}")
        now = self.clock.now()
        self.switches: Switches = self.fixtures.switches
        size = self.fixtures.catalogue.size if self.catalogue_size is None else self.catalogue_size
        if size < 0:
            raise ValueError("the catalogue size must be 0 or more (generated images besides the fixtures' ones)")
        self.catalogue: Catalogue = build_catalogue(
            [curated_image(fx) for fx in self.fixtures.images],
            size=size,
            seed=self.fixtures.catalogue.seed,
            project_id=self.fixtures.simulator.project_id,
        )
        self.images = self.catalogue.by_id
        user = self.fixtures.simulator.user_id
        self.keypairs = {(kp.owner or user, kp.name): kp for kp in self.fixtures.keypairs}
        for fixture in self.fixtures.servers:
            self._add_server(fixture, now)

    # ------------------------------------------------------------------ setup and time
    def _add_server(self, fx: ServerFixture, now: float) -> None:
        image = self.images[fx.image_id]
        vm_state = _VM_STATE_OF_STATUS[fx.status]
        metadata = {
            "image_name": image.name,
            "os_type": image.os_type,
            "os_bit": image.os_bit,
            "metering.image_id": image.id,
            "metering.imagetype": image.imagetype,
            "charging_mode": "0",
            "vpc_id": "5a2c1d3e-0000-4b00-8000-00000000a11c",
            "EcmResStatus": "normal",
            **fx.metadata,
        }
        created = now - 30 * 86_400
        for vol in fx.volumes:
            self.volumes[vol.id] = Volume(
                id=vol.id,
                name=vol.name or f"{fx.name}-{'system' if vol.boot_index == '0' else 'data'}-{vol.device[-1]}",
                size=vol.size,
                boot_index=vol.boot_index,
                device=vol.device,
                volume_type=vol.volume_type,
                server_id=fx.id,
                availability_zone=fx.availability_zone,
                created=created,
            )
        fault = None
        if vm_state == "error":
            fault = {"code": 500, "message": "Changing the OS failed.", "details": "", "created": iso_seconds(now)}
        self.servers[fx.id] = Server(
            id=fx.id,
            name=fx.name,
            vm_state=vm_state,
            task_state=None,
            power_state=_POWER_OF_VM_STATE[vm_state],
            locked=fx.locked,
            image_id=fx.image_id,
            metadata=metadata,
            volume_ids=[v.id for v in fx.volumes],
            flavor=fx.flavor,
            key_name=fx.key_name,
            ip=fx.ip,
            availability_zone=fx.availability_zone,
            created=created,
            updated=created,
            failed_change=fx.failed_change,
            tags=dict(fx.tags),
            fault=fault,
            os_image_id=fx.image_id,
        )

    @property
    def timing(self) -> Timing:
        return self.fixtures.timing

    def now(self) -> float:
        return self.clock.now()

    def advance(self) -> None:
        """Apply every transition that is due by now, in time order (each at its own due time)."""
        now = self.clock.now()
        events = self._events
        while events and events[0][0] <= now:
            due, _, action = heapq.heappop(events)
            action(due)

    def _at(self, due: float, action: Callable[[float], None]) -> None:
        heapq.heappush(self._events, (due, next(self._seq), action))

    def _duration(self, name: str) -> float:
        low, high = getattr(self.timing, name)
        return self.timing_rng.uniform(low, high) / self.speed

    def _new_job_id(self) -> str:
        return f"ff808082{self.id_rng.getrandbits(96):024x}"

    # ------------------------------------------------------------------ reads
    def get_server(self, server_id: str) -> Server:
        server = self.servers.get(server_id)
        if server is None:
            raise SimError(404, "Ecs.0114", f"Instance[{server_id}] could not be found.")
        return server

    def system_volume(self, server: Server) -> Volume | None:
        for volume_id in server.volume_ids:
            volume = self.volumes[volume_id]
            if volume.bootable:
                return volume
        return None

    def list_servers(
        self,
        *,
        name: str | None = None,
        status: str | None = None,
        limit: int = 25,
        offset: int = 1,
        marker: str | None = None,
    ) -> tuple[int, list[Server]]:
        """Name is fuzzy (substring; `.` matches any character); a stable status also matches its transients."""
        found = list(self.servers.values())
        if name:
            pattern = re.compile("".join("[^\n\r]" if ch == "." else re.escape(ch) for ch in name))
            found = [s for s in found if pattern.search(s.name)]
        if status:
            vm_state = _VM_STATE_OF_STATUS.get(status)
            found = [s for s in found if s.status == status or (vm_state is not None and s.vm_state == vm_state)]
        count = len(found)
        if marker:
            ids = [s.id for s in found]
            found = found[ids.index(marker) + 1 :] if marker in ids else []
            return count, found[:limit]
        page = max(offset, 1)
        return count, found[(page - 1) * limit : page * limit]

    def list_images(self, params: list[tuple[str, str]]) -> Page:
        return query(self.catalogue, params, self.switches)

    def keypairs_of(self, user_id: str) -> list[KeyPairFixture]:
        """Nova key pairs are per IAM user: only the user that created a pair can see it (reference §24)."""
        return [kp for (owner, _), kp in self.keypairs.items() if owner == user_id]

    def private_image_count(self) -> int:
        return len(self.catalogue.ids_with("__imagetype", "private"))

    def own_catalogue(self) -> Catalogue:
        """The catalogue to change: a private copy on the first change (built ones are shared between simulators)."""
        if not self.owns_catalogue:
            self.catalogue = self.catalogue.copy()
            self.images = self.catalogue.by_id
            self.owns_catalogue = True
        return self.catalogue

    def get_volume(self, volume_id: str) -> Volume:
        volume = self.volumes.get(volume_id)
        if volume is None:
            raise SimError(404, "EVS.5404", f"The volume {volume_id} could not be found.")
        return volume

    def get_job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is not None and self._job_gone(job):
            del self.jobs[job_id]
            job = None
        if job is None:
            raise SimError(400, "Common.0011", f"Failed to query system tasks: job {job_id} does not exist.")
        return job

    def _job_gone(self, job: Job) -> bool:
        """Records expire: a day after the end, 14 days unpaid, or after `job_ttl` whatever the status."""
        age = self.now() - job.created_at
        ttl = self.switches.job_ttl
        if ttl is not None and age >= ttl / self.speed:
            return True
        if job.status == "PENDING_PAYMENT" and age > PAYMENT_RETENTION / self.speed:
            return True
        return job.ended_at is not None and self.now() - job.ended_at > JOB_RETENTION / self.speed

    def expire_jobs(self, job_id: str | None = None) -> int:
        """Forget job records now (the servers keep changing); the count forgotten."""
        gone = [j for j in self.jobs if job_id in (None, j)]
        for key in gone:
            del self.jobs[key]
        return len(gone)

    # ------------------------------------------------------------------ jobs
    def _new_job(self, job_type: str, sub_type: str, servers: list[Server], *, top_server: bool) -> Job:
        begin = iso_millis(self.now())
        job = Job(
            job_id=self._new_job_id(),
            job_type=job_type,
            begin_time=begin,
            server_id=servers[0].id if top_server else None,
            sub_jobs=[SubJob(self._new_job_id(), sub_type, s.id, begin) for s in servers],
            created_at=self.now(),
        )
        self.jobs[job.job_id] = job
        return job

    def _set_running(self, job: Job) -> None:
        if job.status == "INIT":
            job.status = "RUNNING"
        for sub in job.sub_jobs:
            if sub.status == "INIT":
                sub.status = "RUNNING"

    def _finish_sub(self, job: Job, sub: SubJob, due: float, fail: FailJob | None = None) -> None:
        sub.status = "FAIL" if fail else "SUCCESS"
        sub.end_time = iso_millis(due)
        if fail:
            sub.error_code, sub.fail_reason = fail.error_code, fail.fail_reason
        if all(s.status in {"SUCCESS", "FAIL"} for s in job.sub_jobs):
            failed = [s for s in job.sub_jobs if s.status == "FAIL"]
            job.status = "FAIL" if failed else "SUCCESS"
            job.end_time = iso_millis(due)
            job.ended_at = due
            if failed:
                job.error_code, job.fail_reason = failed[0].error_code, failed[0].fail_reason
        else:
            self._set_running(job)

    def _check_idle(self, server: Server) -> None:
        if server.locked:
            raise SimError(400, "Ecs.0605", f"ECS locked: {server.name} ({server.id}) is locked. Unlock it first.")
        if server.busy:
            raise SimError(
                501,
                "Ecs.0603",
                f"The commands are being executed. Try again later: {server.name} is busy ({server.status}).",
            )

    # ------------------------------------------------------------------ stop / start
    def stop_servers(self, server_ids: list[str], *, hard: bool) -> str:
        servers = [self.get_server(sid) for sid in server_ids]
        for server in servers:
            self._check_idle(server)
        now = self.now()
        job = self._new_job("batchStopServers", "stopServer", servers, top_server=False)
        self._at(now + min(1.0, self.timing.already_done[0]) / self.speed, lambda _due: self._set_running(job))
        for server, sub in zip(servers, job.sub_jobs, strict=True):
            if server.vm_state != "active":
                self._at(now + self._duration("already_done"), self._stop_done(job, sub, server, changed=False))
                continue
            server.task_state = "powering-off"
            server.busy_job = job.job_id
            duration = self._duration("stop_hard" if hard else "stop_soft")
            self._at(now + duration, self._stop_done(job, sub, server, changed=True))
        return job.job_id

    def _stop_done(self, job: Job, sub: SubJob, server: Server, *, changed: bool) -> Callable[[float], None]:
        def done(due: float) -> None:
            if changed:
                server.vm_state, server.task_state, server.power_state = "stopped", None, 4
                server.busy_job = None
                server.updated = due
            self._finish_sub(job, sub, due)

        return done

    def start_servers(self, server_ids: list[str]) -> str:
        servers = [self.get_server(sid) for sid in server_ids]
        for server in servers:
            self._check_idle(server)
        now = self.now()
        job = self._new_job("batchStartServers", "startServer", servers, top_server=False)
        self._at(now + min(1.0, self.timing.already_done[0]) / self.speed, lambda _due: self._set_running(job))
        for server, sub in zip(servers, job.sub_jobs, strict=True):
            if server.vm_state != "stopped":
                self._at(now + self._duration("already_done"), self._start_done(job, sub, server, changed=False))
                continue
            server.task_state = "powering-on"
            server.busy_job = job.job_id
            self._at(now + self._duration("start"), self._start_done(job, sub, server, changed=True))
        return job.job_id

    def _start_done(self, job: Job, sub: SubJob, server: Server, *, changed: bool) -> Callable[[float], None]:
        def done(due: float) -> None:
            if changed:
                server.vm_state, server.task_state, server.power_state = "active", None, 1
                server.busy_job = None
                server.updated = due
            self._finish_sub(job, sub, due)

        return done

    # ------------------------------------------------------------------ change OS
    def flavor_of(self, server: Server) -> Flavor:
        flavor = parse_flavor(server.flavor)
        assert flavor is not None  # fixtures are validated
        return flavor

    def change_os(self, server_id: str, request: ChangeOs, *, cloud_init: bool) -> str:
        """Refuse as the cloud does (codes in docs/simulator.md), else start a changeOS job."""
        server = self.get_server(server_id)
        self._check_idle(server)
        switches = self.switches
        with_stop = request.mode == "withStopServer"
        if not (server.vm_state == "stopped" or server.failed_change or (with_stop and server.vm_state == "active")):
            raise SimError(
                400,
                "Ecs.0100",
                f"The ECS status does not meet requirements: {server.name} is {server.status}. Only a stopped ECS, "
                "or one whose OS change failed, can change its OS. Stop the ECS and try again.",
            )
        system_volume = self.system_volume(server)
        if system_volume is None:
            raise SimError(400, "Ecs.0105", "No system disk found. Attach the system disk to the ECS and try again.")
        image = self.images.get(request.imageid)
        if image is None or image.status == "deleted":
            raise SimError(400, "Ecs.0031", f"The image does not exist: {request.imageid}.")
        if image.status != "active":
            raise SimError(400, "Ecs.0032", f"The image is not in Active state: {image.name} is {image.status}.")
        problem = compat_problem(image, self.flavor_of(server), system_volume.size, server.name)
        if problem is not None and switches.incompatible_image == "sync":
            raise SimError(400, problem.error_code, problem.fail_reason)
        if image.os_type == "Windows" and not cloud_init and switches.windows_v1 == "refuse":
            raise SimError(
                400,
                "Ecs.0007",
                f"Invalid image attributes: {image.name} is a Windows image; this API (changeos without Cloud-Init) "
                "cannot change an ECS OS to Windows.",
            )
        image_cloud_init = image.support_fc_inject != "true"
        if switches.fc_inject == "strict" and image_cloud_init and not cloud_init:
            raise SimError(
                400,
                "Ecs.0007",
                f"Invalid image attributes: {image.name} supports Cloud-Init; "
                "use POST /v2/{project_id}/cloudservers/{server_id}/changeos.",
            )
        if switches.fc_inject == "strict" and cloud_init and not image_cloud_init:
            raise SimError(
                400,
                "Ecs.0007",
                f"Invalid image attributes: {image.name} does not support Cloud-Init; "
                "use POST /v1/{project_id}/cloudservers/{server_id}/changeos.",
            )
        if image.os_type == "Windows" and request.keyname:
            raise bad_request("Invalid parameter values: a Windows image supports only password login (adminpass).")
        if request.keyname:
            owners = {owner for owner, name in self.keypairs if name == request.keyname}
            if not owners:
                raise SimError(400, "Ecs.0314", _no_keypair(request.keyname, request.userid))
            if request.userid not in owners:  # the pair exists, but it is another user's
                foreign = FailJob(error_code="Ecs.0314", fail_reason=_no_keypair(request.keyname, request.userid))
                if switches.foreign_keypair == "sync":
                    raise SimError(400, foreign.error_code, foreign.fail_reason)
                problem = problem or foreign
        if request.adminpass is not None:
            reason = password_problem(request.adminpass.get_secret_value(), image.os_type)
            if reason:
                raise SimError(
                    400, "Ecs.0011", f"Ensure the password meets the password complexity requirements. {reason}"
                )
        if request.metadata.get("BYOL") == "true":
            raise SimError(
                400, "Ecs.0090", "Image license type is BYOL, the BYOL feature is not supported at this time."
            )
        if problem is None:
            server.login_keyname = request.keyname
            server.login_password_sha256 = (
                hashlib.sha256(request.adminpass.get_secret_value().encode()).hexdigest()
                if request.adminpass
                else None
            )
        return self._start_change(server, image, request, problem, with_stop=with_stop)

    def _start_change(
        self, server: Server, image: Image, request: ChangeOs, problem: FailJob | None, *, with_stop: bool
    ) -> str:
        now = self.now()
        job = self._new_job("changeOS", "changeOS", [server], top_server=True)
        server.busy_job = job.job_id
        server.updated = now
        hold = self.faults.take_hold(server.id)
        if hold is None:
            self._begin_change(job, server, image, request, problem, now, with_stop=with_stop)
        else:

            def begin(due: float) -> None:
                self._begin_change(job, server, image, request, problem, due, with_stop=with_stop)

            self._hold(job, hold, begin)
        return job.job_id

    def _hold(self, job: Job, hold: HoldJobs, then: Callable[[float], None]) -> None:
        """An order that waits for payment (or a job stuck initialising): nothing happens to the server yet."""
        job.status = hold.status
        for sub in job.sub_jobs:
            sub.status = hold.status
        if hold.seconds is not None:

            def release(due: float) -> None:
                job.status = "INIT"
                for sub in job.sub_jobs:
                    sub.status = "INIT"
                then(due)

            self._at(self.now() + hold.seconds / self.speed, release)

    def _begin_change(
        self,
        job: Job,
        server: Server,
        image: Image,
        request: ChangeOs,
        problem: FailJob | None,
        now: float,
        *,
        with_stop: bool,
    ) -> None:
        sub = job.sub_jobs[0]
        stopping = with_stop and server.vm_state == "active"
        server.task_state = "powering-off" if stopping else "rebuilding"
        server.updated = now
        running_at = now + self._duration("job_init")
        self._at(running_at, lambda _due: self._set_running(job))
        base = running_at
        if stopping:
            base += self._duration("stop_soft")

            def stopped(due: float) -> None:
                server.vm_state, server.task_state, server.power_state = "stopped", "rebuilding", 4

            self._at(base, stopped)
        injected = self.faults.take_fail_job(server.id)
        if problem is not None:
            self._at(
                base + self._duration("min_disk_check"),
                self._change_done(job, sub, server, image, request, problem, early=True),
            )
        elif injected is not None:
            self._at(
                base + self._duration("change_running") / 2,
                self._change_done(job, sub, server, image, request, injected),
            )
        else:
            self._at(base + self._duration("change_running"), self._change_done(job, sub, server, image, request, None))

    def _change_done(
        self,
        job: Job,
        sub: SubJob,
        server: Server,
        image: Image,
        request: ChangeOs,
        fail: FailJob | None,
        *,
        early: bool = False,
    ) -> Callable[[float], None]:
        keyname = request.keyname

        def done(due: float) -> None:
            server.task_state = None
            server.busy_job = None
            server.updated = due
            if fail is None:
                server.image_id = image.id
                server.os_image_id = self.image_os.get(image.id, image.id)
                server.metadata.update(
                    {
                        "image_name": image.name,
                        "os_type": image.os_type,
                        "os_bit": image.os_bit,
                        "metering.image_id": image.id,
                        "metering.imagetype": image.imagetype,
                    }
                )
                server.key_name = keyname
                server.failed_change, server.fault = False, None
                if self.fixtures.simulator.power_on_after_change:
                    server.vm_state, server.power_state = "active", 1
                else:
                    server.vm_state, server.power_state = "stopped", 4
            else:
                # A check that fails before the disk is touched leaves the server stopped; a failure during the
                # rebuild leaves it in ERROR. Either way the cloud accepts another change afterwards.
                server.failed_change = True
                if not early:
                    server.vm_state, server.power_state = "error", 4
                    server.fault = {
                        "code": 500,
                        "message": f"{fail.error_code}: {fail.fail_reason}",
                        "details": "",
                        "created": iso_seconds(due),
                    }
            self._finish_sub(job, sub, due, fail)

        return done

    # ------------------------------------------------------------------ debugging
    def set_switches(self, changes: dict[str, Any]) -> Switches:
        self.switches = Switches.model_validate({**self.switches.model_dump(), **changes})
        return self.switches

    def summary(self) -> dict[str, Any]:
        return {
            "now": iso_millis(self.now()),
            "speed": self.speed,
            "seed": self.seed,
            "servers": [
                {
                    "id": s.id,
                    "name": s.name,
                    "status": s.status,
                    "vm_state": s.vm_state,
                    "task_state": s.task_state,
                    "locked": s.locked,
                    "image_id": s.image_id,
                    "os_image_id": s.os_image_id,
                    "image_name": s.metadata.get("image_name"),
                    "busy_job": s.busy_job,
                }
                for s in self.servers.values()
            ],
            "jobs": [
                {"job_id": j.job_id, "job_type": j.job_type, "status": j.status, "server_id": j.server_id}
                for j in self.jobs.values()
            ],
            "pending_events": len(self._events),
        }


def curated_image(fx: ImageFixture) -> Image:
    return Image(
        id=fx.id,
        name=fx.name,
        status=fx.status,
        os_type=fx.os_type,
        platform=fx.platform,
        os_version=fx.os_version,
        os_bit=fx.os_bit,
        min_disk=fx.min_disk,
        min_ram=fx.min_ram,
        support_fc_inject=fx.support_fc_inject,
        imagetype=fx.imagetype,
        visibility=fx.visibility,
        virtual_env_type=fx.virtual_env_type,
        arm=fx.architecture == "arm",
        firmware=fx.hw_firmware_type,
        support_kvm=fx.support_kvm,
        support_xen=fx.support_xen,
        created=CURATED_CREATED,
    )


def _no_keypair(keyname: str, userid: str | None) -> str:
    return (
        f"The key pair does not exist. Refresh the key pair list and check the key pair: user {userid} has no key "
        f"pair named {keyname!r}."
    )


def compat_problem(image: Image, flavor: Flavor, disk: int, server_name: str) -> FailJob | None:
    """Why this image cannot be this server's system disk (reference §21), or None when it fits."""
    if not image.ecs_system_image:
        kind = {"Ironic": "BMS", "DataImage": "data-disk", "IsoImage": "ISO"}.get(image.virtual_env_type, "")
        return FailJob(
            error_code="Ecs.0007",
            fail_reason=(
                f"Invalid image attributes: {image.name} is a {kind} image (virtual_env_type "
                f"{image.virtual_env_type}), not an ECS system-disk image (FusionCompute). Choose an ECS image."
            ),
        )
    if image.arm != flavor.arm:
        return FailJob(
            error_code="Ecs.0005",
            fail_reason=(
                f"The flavor does not match the image: {image.name} is {image.architecture} but flavor {flavor.id} "
                f"of {server_name} is {flavor.architecture}. Choose an image of the same architecture."
            ),
        )
    if flavor.arm and image.boot_firmware != "uefi":
        return FailJob(
            error_code="Ecs.0005",
            fail_reason=(
                f"The flavor does not match the image: ARM flavor {flavor.id} boots UEFI only and {image.name} is "
                f"{image.boot_firmware.upper()}. Choose a UEFI image."
            ),
        )
    if (flavor.kvm and not image.support_kvm) or (not flavor.kvm and not image.support_xen):
        virt = "KVM" if flavor.kvm else "Xen"
        return FailJob(
            error_code="Ecs.0005",
            fail_reason=(
                f"The flavor does not match the image: flavor {flavor.id} is {virt} and {image.name} does not "
                f"support {virt} (__support_{virt.lower()})."
            ),
        )
    if image.min_disk > disk:
        return FailJob(
            error_code="Ecs.0007",
            fail_reason=(
                f"The image {image.name} needs a system disk of at least {image.min_disk} GB but the system disk "
                f"of {server_name} is {disk} GB. Expand the system disk or choose another image."
            ),
        )
    return None
