"""JSON bodies exactly as the reference gives them: wrappers, field names and types (strings stay strings)."""

from __future__ import annotations

from typing import Any

from sandbox.simulator.catalogue import Image, image_body
from sandbox.simulator.clock import iso_seconds
from sandbox.simulator.fixtures import KeyPairFixture
from sandbox.simulator.state import Job, Server, SimState, SubJob, Volume

_VCPUS = {"small": 1, "medium": 1, "large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32}


def flavor(flavor_id: str) -> dict[str, Any]:
    """`s6.large.2` → 2 vCPUs, 2 GB per vCPU. All values are strings, as the API sends them."""
    parts = flavor_id.split(".")
    vcpus = _VCPUS.get(parts[1], 2) if len(parts) == 3 else 2
    ratio = int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else 2
    return {
        "id": flavor_id,
        "name": flavor_id,
        "disk": "0",
        "vcpus": str(vcpus),
        "ram": str(vcpus * ratio * 1024),
        "gpus": [],
        "asic_accelerators": [],
    }


def server(state: SimState, s: Server) -> dict[str, Any]:
    project = state.fixtures.simulator.project_id
    system = state.system_volume(s)
    volumes = [state.volumes[v] for v in s.volume_ids]
    body: dict[str, Any] = {
        "id": s.id,
        "name": s.name,
        "status": s.status,
        "description": "",
        "created": iso_seconds(s.created),
        "updated": iso_seconds(s.updated),
        "hostId": "c7145889b2e3202cd295ceddb1742ff8941b827b586861fd0acedf64",
        "OS-EXT-SRV-ATTR:host": "pod01.my-kualalumpur-1a",
        "OS-EXT-SRV-ATTR:hypervisor_hostname": "nova001@36",
        "OS-EXT-SRV-ATTR:instance_name": f"instance-{s.id[-8:]}",
        "OS-EXT-SRV-ATTR:hostname": s.name,
        "OS-EXT-SRV-ATTR:reservation_id": f"r-{s.id[:8]}",
        "OS-EXT-SRV-ATTR:launch_index": 0,
        "OS-EXT-SRV-ATTR:kernel_id": "",
        "OS-EXT-SRV-ATTR:ramdisk_id": "",
        "OS-EXT-SRV-ATTR:root_device_name": system.device if system else "/dev/vda",
        "addresses": {
            s.metadata.get("vpc_id", "vpc"): [
                {
                    "version": "4",
                    "addr": s.ip,
                    "OS-EXT-IPS:type": "fixed",
                    "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:" + ":".join(s.id[-6:][i : i + 2] for i in (0, 2, 4)),
                    "OS-EXT-IPS:port_id": f"{s.id[:-4]}beef",
                    "primary": True,
                }
            ]
        },
        "key_name": s.key_name,
        "image": {"id": s.image_id},
        "OS-EXT-STS:task_state": s.task_state,
        "OS-EXT-STS:vm_state": s.vm_state,
        "OS-EXT-STS:power_state": s.power_state,
        "flavor": flavor(s.flavor),
        "security_groups": [{"name": "default", "id": "1d5e8b1c-0000-4c00-8000-00000000de5f"}],
        "OS-EXT-AZ:availability_zone": s.availability_zone,
        "user_id": state.fixtures.simulator.user_id,
        "tenant_id": project,
        "OS-DCF:diskConfig": "MANUAL",
        "accessIPv4": "",
        "accessIPv6": "",
        "progress": 0,
        "config_drive": "",
        "metadata": dict(s.metadata),
        "OS-SRV-USG:launched_at": iso_seconds(s.created).replace("Z", ".000000"),
        "OS-SRV-USG:terminated_at": "",
        "os-extended-volumes:volumes_attached": [
            {
                "id": v.id,
                "delete_on_termination": "true" if v.bootable else "false",
                "bootIndex": v.boot_index,
                "device": v.device,
            }
            for v in volumes
        ],
        "host_status": "UP",
        "locked": s.locked,
        "tags": [f"{k}={v}" for k, v in s.tags.items()],
        "os:scheduler_hints": {},
        "enterprise_project_id": "0",
        "sys_tags": [{"key": "_sys_enterprise_project_id", "value": "0"}],
    }
    if s.vm_state == "error" and s.fault:
        body["fault"] = dict(s.fault)
    return body


def image(i: Image) -> dict[str, Any]:
    return image_body(i)


def volume(state: SimState, v: Volume) -> dict[str, Any]:
    server = state.servers.get(v.server_id)
    attached = iso_seconds(v.created).replace("Z", ".000000")
    body: dict[str, Any] = {
        "id": v.id,
        "name": v.name,
        "status": "in-use",
        "size": v.size,
        "bootable": "true" if v.bootable else "false",
        "volume_type": v.volume_type,
        "availability_zone": v.availability_zone,
        "multiattach": False,
        "shareable": False,
        "encrypted": False,
        "created_at": attached,
        "updated_at": attached,
        "description": "",
        "metadata": {},
        "links": [{"href": f"/v2/{state.fixtures.simulator.project_id}/volumes/{v.id}", "rel": "self"}],
        "attachments": [
            {
                "server_id": v.server_id,
                "attachment_id": f"{v.id[:-4]}a77a",
                "attached_at": attached,
                "host_name": None,
                "volume_id": v.id,
                "device": v.device,
                "id": v.id,
            }
        ],
    }
    if v.bootable and server is not None:
        body["volume_image_metadata"] = {
            "image_id": server.image_id,
            "image_name": server.metadata.get("image_name", ""),
            "min_disk": str(state.images[server.image_id].min_disk) if server.image_id in state.images else "",
        }
    return body


def keypair(k: KeyPairFixture) -> dict[str, Any]:
    return {"keypair": {"name": k.name, "fingerprint": k.fingerprint, "public_key": k.public_key, "type": k.type}}


def _sub_job(sub: SubJob) -> dict[str, Any]:
    entities: dict[str, Any] = {"server_id": sub.server_id}
    if sub.status == "FAIL":
        entities["errorcode_message"] = sub.fail_reason
    return {
        "status": sub.status,
        "entities": entities,
        "job_id": sub.job_id,
        "job_type": sub.job_type,
        "begin_time": sub.begin_time,
        "end_time": sub.end_time,
        "error_code": sub.error_code,
        "fail_reason": sub.fail_reason,
    }


def job(j: Job, *, sub_jobs: bool = True, entities: str = "full") -> dict[str, Any]:
    """`sub_jobs=False` drops them from changeOS jobs ([U] switch); `entities` "empty"/"missing" is a fault."""
    body: dict[str, Any] = {"status": j.status}
    if entities != "missing":
        ent: dict[str, Any] = {}
        if entities == "full":
            if j.server_id is not None:
                ent["server_id"] = j.server_id
            if sub_jobs or j.job_type != "changeOS":
                ent["sub_jobs_total"] = len(j.sub_jobs)
                ent["sub_jobs"] = [_sub_job(sub) for sub in j.sub_jobs]
        body["entities"] = ent
    body.update(
        {
            "job_id": j.job_id,
            "job_type": j.job_type,
            "begin_time": j.begin_time,
            "end_time": j.end_time,
            "error_code": j.error_code,
            "fail_reason": j.fail_reason,
        }
    )
    return body
