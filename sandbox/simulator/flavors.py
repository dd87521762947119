"""Flavors as the ECS flavor APIs describe them: architecture and virtualization come from `os_extra_specs`.

`ecs:instance_architecture` is present only on Kunpeng (ARM) flavors, value `arm64`; absent means x86.
`ecs:virtualization_env_types` is `CloudCompute` (KVM) or `FusionCompute` (Xen) (reference §21).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# family -> (arm, virtualization, performancetype, generation)
_FAMILIES: dict[str, tuple[bool, str, str, str]] = {
    "s6": (False, "CloudCompute", "normal", "s6"),
    "s7": (False, "CloudCompute", "normal", "s7"),
    "s7n": (False, "CloudCompute", "normal", "s7n"),
    "sn3": (False, "CloudCompute", "normal", "sn3"),
    "s3": (False, "CloudCompute", "normal", "s3"),
    "t6": (False, "CloudCompute", "normal", "t6"),
    "c6": (False, "CloudCompute", "computingv3", "c6"),
    "c6s": (False, "CloudCompute", "computingv3", "c6s"),
    "c7": (False, "CloudCompute", "computingv3", "c7"),
    "m6": (False, "CloudCompute", "highmem", "m6"),
    "m7": (False, "CloudCompute", "highmem", "m7"),
    "s1": (False, "FusionCompute", "normal", "s1"),
    "c1": (False, "FusionCompute", "computingv1", "c1"),
    "m1": (False, "FusionCompute", "highmem", "m1"),
    "kc1": (True, "CloudCompute", "kunpeng_computing", "kc1"),
    "kc2": (True, "CloudCompute", "kunpeng_computing", "kc2"),
    "km1": (True, "CloudCompute", "kunpeng_highmem", "km1"),
    "km2": (True, "CloudCompute", "kunpeng_highmem", "km2"),
}
_VCPUS = {"small": 1, "medium": 1, "large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32}


@dataclass(frozen=True)
class Flavor:
    id: str
    vcpus: int
    ram_mb: int
    arm: bool
    virtualization: str  # CloudCompute (KVM) or FusionCompute (Xen)
    performancetype: str
    generation: str

    @property
    def architecture(self) -> str:
        return "arm" if self.arm else "x86"

    @property
    def kvm(self) -> bool:
        return self.virtualization == "CloudCompute"

    def extra_specs(self) -> dict[str, str]:
        specs = {
            "ecs:virtualization_env_types": self.virtualization,
            "ecs:performancetype": self.performancetype,
            "ecs:generation": self.generation,
            "cond:operation:status": "normal",
            "cond:operation:az": "my-kualalumpur-1a(normal),my-kualalumpur-1b(normal)",
            "resource_type": f"IES_{self.generation}",
            "info:cpu:name": "Huawei Kunpeng 920 2.6GHz" if self.arm else "Intel Xeon Gold 6278C 2.6GHz",
        }
        if self.arm:
            specs["ecs:instance_architecture"] = "arm64"
        return specs


def parse_flavor(flavor_id: str) -> Flavor | None:
    """`kc1.large.2` → ARM, 2 vCPUs, 2 GB per vCPU; None for a family the simulator does not sell."""
    parts = flavor_id.split(".")
    if len(parts) != 3 or parts[0] not in _FAMILIES or parts[1] not in _VCPUS or not parts[2].isdigit():
        return None
    arm, virt, perf, gen = _FAMILIES[parts[0]]
    vcpus = _VCPUS[parts[1]]
    return Flavor(flavor_id, vcpus, vcpus * int(parts[2]) * 1024, arm, virt, perf, gen)


def catalogue() -> list[Flavor]:
    """Every flavor the simulator sells (what `GET /v1/{project_id}/cloudservers/flavors` lists)."""
    out = []
    for family in _FAMILIES:
        for size in ("medium", "large", "xlarge", "2xlarge"):
            for ratio in (1, 2, 4):
                flavor = parse_flavor(f"{family}.{size}.{ratio}")
                assert flavor is not None
                out.append(flavor)
    return out


def flavor_body(flavor: Flavor) -> dict[str, Any]:
    return {
        "id": flavor.id,
        "name": flavor.id,
        "vcpus": str(flavor.vcpus),
        "ram": flavor.ram_mb,
        "disk": "0",
        "swap": "",
        "links": [],
        "OS-FLV-EXT-DATA:ephemeral": 0,
        "rxtx_factor": 1.0,
        "OS-FLV-DISABLED:disabled": False,
        "rxtx_quota": None,
        "rxtx_cap": None,
        "os-flavor-access:is_public": True,
        "os_extra_specs": flavor.extra_specs(),
    }
