"""Fault injection: error rates, latency, 429 bursts, dropped answers and failing jobs, per route.

Rules come from the fixtures' `[[faults]]` and from `POST /_sim/faults`; decisions use a seeded RNG so a run
with the same seed and the same requests injects the same faults.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ROUTES = (
    "show_server",
    "list_servers",
    "server_action",
    "change_os_v1",
    "change_os_v2",
    "show_job",
    "list_keypairs",
    "list_images",
    "image_quota",
    "show_volume",
    "list_flavors",
    "show_flavor_extra_specs",
    "list_servers_by_tag",
    "create_image",
    "show_image_job",
    "delete_image",
    "image_tags",
    "image_tag_action",
    "add_image_tag",
    "delete_image_tag",
)
# The ECS metadata service is not behind the API gateway: a rule must name these routes; `*` leaves them alone.
METADATA_ROUTES = ("metadata_token", "metadata_securitykey")
# A rule may name a family: `change_os` covers both the v1 and the v2 path.
FAMILIES = {"change_os": ("change_os_v1", "change_os_v2")}
ROUTE_NAMES = (*ROUTES, *METADATA_ROUTES, *FAMILIES, "*")
DROPPABLE = ("server_action", "change_os_v1", "change_os_v2", "create_image", "delete_image")


class FailJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    server_id: str | None = None
    error_code: str = "Ecs.1002"
    fail_reason: str = "OpenStack access timed out. Stop the operation and try again later."


class FailImageJob(BaseModel):
    """The next image-creation job (from that server) ends in FAIL halfway; its image is left `killed` or removed."""

    model_config = ConfigDict(extra="forbid")

    server_id: str | None = None
    error_code: str = "Common.0001"
    fail_reason: str = "System exception: creating the image from the ECS system disk failed (simulator)."


class HoldJobs(BaseModel):
    """The next change-OS job (on that server) stays INIT or PENDING_PAYMENT for `seconds`, then goes on."""

    model_config = ConfigDict(extra="forbid")

    server_id: str | None = None
    status: Literal["INIT", "PENDING_PAYMENT"] = "PENDING_PAYMENT"
    seconds: float | None = Field(default=None, ge=0)  # simulated seconds at speed 1; None = until it expires


class ExpireJobs(BaseModel):
    """Job records vanish now (one job, or every job): GET answers Common.0011; the servers go on changing."""

    model_config = ConfigDict(extra="forbid")

    job_id: str | None = None


class FaultSpec(BaseModel):
    """One rule as written in JSON or TOML; keys documented in docs/simulator.md."""

    model_config = ConfigDict(extra="forbid")

    route: str = "*"
    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    status: int = Field(default=500, ge=400, le=599)
    code: str = "Common.0001"
    message: str | None = None
    latency_ms: int = Field(default=0, ge=0, le=120_000)
    burst_429: int = Field(default=0, ge=0)
    retry_after: int | None = Field(default=None, ge=0)  # the gateway sends no Retry-After; this adds one
    drop_response: int = Field(default=0, ge=0)
    fail_jobs: FailJob | None = None
    fail_image_jobs: FailImageJob | None = None
    hold_jobs: HoldJobs | None = None
    expire_jobs: ExpireJobs | None = None
    job_entities: Literal["full", "empty", "missing"] | None = None

    @model_validator(mode="after")
    def _known_route(self) -> FaultSpec:
        if self.route not in ROUTE_NAMES:
            raise ValueError(f"unknown route {self.route!r}; use one of: {', '.join(ROUTE_NAMES)}")
        if self.drop_response and not set(expand(self.route)) & set(DROPPABLE):
            raise ValueError(f"drop_response applies to write routes only: {', '.join(DROPPABLE)}, change_os or *")
        return self


def expand(route: str) -> tuple[str, ...]:
    """The routes a rule names; `*` is every gateway route, not the metadata service."""
    if route == "*":
        return ROUTES
    return FAMILIES.get(route, (route,))


@dataclass
class Rule:
    id: int
    spec: FaultSpec
    burst_left: int
    drop_left: int

    def matches(self, route: str) -> bool:
        return route in expand(self.spec.route)

    def to_json(self) -> dict[str, Any]:
        data = self.spec.model_dump(exclude_none=True)
        data.update(id=self.id, burst_429_left=self.burst_left, drop_response_left=self.drop_left)
        return data


@dataclass(frozen=True)
class InjectedError:
    status: int
    code: str
    message: str
    retry_after: int | None = None


@dataclass
class FaultBook:
    """Active rules plus the queue of jobs that must end in FAIL."""

    rng: random.Random
    rules: list[Rule] = field(default_factory=list)
    fail_jobs: list[FailJob] = field(default_factory=list)
    fail_image_jobs: list[FailImageJob] = field(default_factory=list)
    hold_jobs: list[HoldJobs] = field(default_factory=list)
    job_entities: str = "full"
    _next_id: int = 1

    def add(self, spec: FaultSpec) -> list[int]:
        ids: list[int] = []
        if spec.fail_jobs is not None:
            self.fail_jobs.append(spec.fail_jobs)
        if spec.fail_image_jobs is not None:
            self.fail_image_jobs.append(spec.fail_image_jobs)
        if spec.hold_jobs is not None:
            self.hold_jobs.append(spec.hold_jobs)
        if spec.job_entities is not None:
            self.job_entities = spec.job_entities
        if any((spec.error_rate, spec.latency_ms, spec.burst_429, spec.drop_response)):
            rule = Rule(self._next_id, spec, spec.burst_429, spec.drop_response)
            self._next_id += 1
            self.rules.append(rule)
            ids.append(rule.id)
        return ids

    def clear(self) -> None:
        self.rules.clear()
        self.fail_jobs.clear()
        self.fail_image_jobs.clear()
        self.hold_jobs.clear()
        self.job_entities = "full"

    def latency(self, route: str) -> float:
        return sum(r.spec.latency_ms for r in self.rules if r.matches(route)) / 1000.0

    def injected_error(self, route: str) -> InjectedError | None:
        """A 429 from a burst first, then an error drawn from the error rates (seeded RNG)."""
        for rule in self.rules:
            if rule.matches(route) and rule.burst_left > 0:
                rule.burst_left -= 1
                return InjectedError(
                    429,
                    "APIGW.0308",
                    "The throttling threshold has been reached: policy user over ratelimit.",
                    rule.spec.retry_after,
                )
        for rule in self.rules:
            if rule.matches(route) and rule.spec.error_rate > 0 and self.rng.random() < rule.spec.error_rate:
                message = rule.spec.message or f"Injected fault on {route} (simulator)."
                return InjectedError(rule.spec.status, rule.spec.code, message)
        return None

    def take_drop(self, route: str) -> bool:
        """Whether the answer to this (carried out) write must be dropped; consumes one from the rule."""
        for rule in self.rules:
            if rule.matches(route) and rule.drop_left > 0 and route in DROPPABLE:
                rule.drop_left -= 1
                return True
        return False

    def take_fail_job(self, server_id: str) -> FailJob | None:
        for index, item in enumerate(self.fail_jobs):
            if item.server_id in (None, server_id):
                return self.fail_jobs.pop(index)
        return None

    def take_fail_image_job(self, server_id: str) -> FailImageJob | None:
        for index, item in enumerate(self.fail_image_jobs):
            if item.server_id in (None, server_id):
                return self.fail_image_jobs.pop(index)
        return None

    def take_hold(self, server_id: str) -> HoldJobs | None:
        for index, item in enumerate(self.hold_jobs):
            if item.server_id in (None, server_id):
                return self.hold_jobs.pop(index)
        return None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "rules": [rule.to_json() for rule in self.rules],
            "fail_jobs": [item.model_dump() for item in self.fail_jobs],
        }
        if self.fail_image_jobs:
            data["fail_image_jobs"] = [item.model_dump() for item in self.fail_image_jobs]
        if self.hold_jobs:
            data["hold_jobs"] = [item.model_dump() for item in self.hold_jobs]
        if self.job_entities != "full":
            data["job_entities"] = self.job_entities
        return data
