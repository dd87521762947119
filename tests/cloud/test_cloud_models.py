"""Response parsing (including the [U] shapes) and the change-OS request body, byte for byte."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from bot.cloud import ChangeOsOption, Image, Job, JobStatus, KeyPair, Server, StopType, Volume
from bot.cloud.models import stop_body

IMAGE = "67f433d8-ed0e-4321-a8a2-a71838539e09"
VECTORS = json.loads(
    (Path(__file__).resolve().parents[1] / "data" / "signing-vectors.json").read_text("utf-8")
)

# ------------------------------------------------------------------------------------------ request bodies


def test_keypair_body_matches_the_signing_vector_bytes() -> None:
    option = ChangeOsOption(imageid=IMAGE, keyname="kp-ops", userid="fedcba9876543210fedcba9876543210")
    post = next(v for v in VECTORS if v["name"] == "post_json_body")
    assert option.to_body() == post["body"].encode("utf-8")


def test_password_body_matches_the_sdk_bytes() -> None:
    option = ChangeOsOption(
        imageid=IMAGE, adminpass="Pa55w0rd!x", mode="withStopServer", metadata={"__system__encrypted": "0"}
    )
    assert option.to_body() == (
        b'{"os-change": {"adminpass": "Pa55w0rd!x", "imageid": "67f433d8-ed0e-4321-a8a2-a71838539e09", '
        b'"mode": "withStopServer", "metadata": {"__system__encrypted": "0"}}}'
    )
    assert option.to_body() == json.dumps(json.loads(option.to_body())).encode()


def test_full_body_key_order_v1_and_v2() -> None:
    cmk = "83cdb52d-9ebf-4469-9cfa-e7b5b80da846"
    option = ChangeOsOption(
        imageid=IMAGE,
        keyname="KeyPair-350b",
        userid="7e25b1da389f4697a79df3a0e5bd494e",
        mode="withStopServer",
        metadata={"__system__encrypted": "1", "__system__cmkid": cmk, "BYOL": "true"},
        isAutoPay="true",
    )
    meta = f'{{"__system__encrypted": "1", "__system__cmkid": "{cmk}", "BYOL": "true"}}'
    head = (
        '{"os-change": {"keyname": "KeyPair-350b", "userid": "7e25b1da389f4697a79df3a0e5bd494e", '
        f'"imageid": "{IMAGE}", '
    )
    assert (
        option.to_body() == (head + f'"mode": "withStopServer", "metadata": {meta}, "isAutoPay": "true"}}}}').encode()
    )
    # The SDK's Cloud-Init (v2) model puts metadata before mode.
    assert (
        option.to_body(cloud_init=True)
        == (head + f'"metadata": {meta}, "mode": "withStopServer", "isAutoPay": "true"}}}}').encode()
    )


def test_body_is_ascii_escaped() -> None:
    option = ChangeOsOption(imageid=IMAGE, keyname="clé", userid="u")
    assert b'"keyname": "cl\\u00e9"' in option.to_body()


def test_stop_body_bytes() -> None:
    assert stop_body(["abc"], StopType.SOFT) == b'{"os-stop": {"servers": [{"id": "abc"}], "type": "SOFT"}}'
    assert stop_body(["abc"], StopType.HARD) == b'{"os-stop": {"servers": [{"id": "abc"}], "type": "HARD"}}'


def test_imageid_is_sent_as_given() -> None:
    assert ChangeOsOption(imageid=IMAGE.upper(), keyname="k", userid="u").imageid == IMAGE.upper()


# ------------------------------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"imageid": IMAGE}, "Choose a login method"),
        ({"imageid": IMAGE, "adminpass": "", "keyname": ""}, "Choose a login method"),
        ({"imageid": IMAGE, "adminpass": "Pa55w0rd!x", "keyname": "k", "userid": "u"}, "not both"),
        ({"imageid": "ubuntu-22.04", "keyname": "k", "userid": "u"}, "UUID"),
        ({"imageid": "67f433d8ed0e4321a8a2a71838539e09", "keyname": "k", "userid": "u"}, "8-4-4-4-12"),
        ({"imageid": IMAGE, "adminpass": "weakpass"}, "at least three of"),
        ({"imageid": IMAGE, "adminpass": "Ab1!"}, "8 to 26"),
        ({"imageid": IMAGE, "adminpass": "Administrator-1", "os_type": "Windows"}, "user name 'Administrator'"),
        ({"imageid": IMAGE, "adminpass": "Xyz-Adm-2024", "os_type": "Windows"}, "consecutive"),
        ({"imageid": IMAGE, "keyname": "kp-ops"}, "needs userid"),
        ({"imageid": IMAGE, "keyname": "kp-ops", "userid": "  "}, "needs userid"),
        ({"imageid": IMAGE, "keyname": "kp", "userid": "u", "os_type": "Windows"}, "only the admin password"),
        ({"imageid": IMAGE, "keyname": "k", "userid": "u", "mode": "now"}, "withStopServer"),
        ({"imageid": IMAGE, "keyname": "k", "userid": "u", "metadata": {"BYOL": "yes"}}, "true"),
        ({"imageid": IMAGE, "keyname": "k", "userid": "u", "metadata": {"__system__cmkid": "x" * 36}}, "encrypted"),
        ({"imageid": IMAGE, "keyname": "k", "userid": "u", "surprise": 1}, "Extra inputs"),
    ],
)
def test_option_validation(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        ChangeOsOption(**kwargs)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_windows_password_that_passes() -> None:
    option = ChangeOsOption(imageid=IMAGE, adminpass="Xyz-Ad-mi-2024", os_type="Windows")
    assert b"os_type" not in option.to_body()  # os_type only drives validation


def test_password_never_in_repr_dump_or_errors() -> None:
    canary = "Canary-Pw-1234!"
    option = ChangeOsOption(imageid=IMAGE, adminpass=canary)
    assert isinstance(option.adminpass, SecretStr)
    assert canary not in repr(option) and canary not in str(option)
    assert canary not in option.model_dump_json()
    for bad in ({"keyname": "k", "userid": "u"}, {"os_type": "Windows", "imageid": "nope"}):
        with pytest.raises(ValidationError) as info:
            ChangeOsOption(**{"imageid": IMAGE, "adminpass": canary, **bad})  # type: ignore[arg-type]
        assert canary not in str(info.value)
        assert canary not in repr(info.value)
        assert canary not in repr(info.value.errors())
    with pytest.raises(ValidationError) as info:
        ChangeOsOption.model_validate_json(json.dumps({"imageid": IMAGE, "adminpass": canary, "keyname": "k"}))
    assert canary not in str(info.value)
    # The body, and only the body, carries it.
    assert canary.encode() in option.to_body()


def test_option_from_json() -> None:
    option = ChangeOsOption.model_validate_json(json.dumps({"imageid": IMAGE, "adminpass": "Pa55w0rd!x"}))
    assert option.adminpass is not None and option.adminpass.get_secret_value() == "Pa55w0rd!x"


# ------------------------------------------------------------------------------------------ servers


OTC_SERVER = {
    "id": "4f4b3dfa-eb70-47cf-a60a-998a53bd6666",
    "name": "ecs-2ecf",
    "status": "ACTIVE",
    "flavor": {"disk": "0", "vcpus": "2", "ram": "1024", "id": "s3.large.1", "name": "s3.large.1"},
    "metadata": {
        "image_name": "Public_Cloudinit_Oracle_Linux_7.4_64bit_40G",
        "os_type": "Linux",
        "os_bit": "64",
        "metering.image_id": "c71b64e7-4767-4406-afde-2c7c7ac2242c",
        "charging_mode": "1",
    },
    "tags": [],
    "locked": False,
    "key_name": "KeyPair-d750",
    "os-extended-volumes:volumes_attached": [
        {"id": "data-1", "delete_on_termination": "false", "device": "/dev/vdb", "bootIndex": "-1"},
        {"id": "80c15cff-0000", "delete_on_termination": "false", "device": "/dev/vda", "bootIndex": "0"},
    ],
    "OS-EXT-STS:task_state": None,
    "OS-EXT-STS:power_state": 1,
    "OS-EXT-STS:vm_state": "active",
    "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
    "OS-EXT-AZ:availability_zone": "az1-dc1",
    "image": {"id": "c71b64e7-4767-4406-afde-2c7c7ac2242c"},
    "sys_tags": [{"key": "_sys_enterprise_project_id", "value": "0"}],
}


def test_server_from_the_official_example() -> None:
    server = Server.model_validate(OTC_SERVER)
    assert server.vm_state == "active" and server.task_state is None and server.power_state == 1
    assert server.image_id == "c71b64e7-4767-4406-afde-2c7c7ac2242c"
    assert server.system_volume is not None and server.system_volume.id == "80c15cff-0000"
    assert server.image_name == "Public_Cloudinit_Oracle_Linux_7.4_64bit_40G"
    assert server.os_type == "Linux"
    assert server.flavor is not None and server.flavor.vcpus == "2" and server.flavor.ram == "1024"
    assert server.key_name == "KeyPair-d750" and server.locked is False
    assert server.model_extra is not None and server.model_extra["OS-EXT-AZ:availability_zone"] == "az1-dc1"


def test_server_tolerates_odd_values() -> None:
    server = Server.model_validate(
        {
            "id": "s",
            "name": "n",
            "status": "SHUTOFF",
            "OS-EXT-STS:power_state": "4",
            "OS-EXT-STS:task_state": "",
            "flavor": {"vcpus": 2, "ram": 1024},
            "image": "",
            "metadata": {"os_bit": 64, "x": None},
            "locked": None,
            "os-extended-volumes:volumes_attached": [{"id": "v", "bootIndex": 0, "device": "/dev/sda"}],
        }
    )
    assert server.power_state == 4 and server.task_state is None and server.image_id is None
    assert server.flavor is not None and server.flavor.vcpus == "2"
    assert server.metadata == {"os_bit": "64", "x": ""}
    assert server.system_volume is not None and server.system_volume.id == "v"
    assert server.image_name is None and server.locked is False


def test_system_volume_by_root_device_when_no_boot_index() -> None:
    server = Server.model_validate(
        {
            "id": "s",
            "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
            "os-extended-volumes:volumes_attached": [
                {"id": "d", "device": "/dev/vdb"},
                {"id": "r", "device": "/dev/vda"},
            ],
        }
    )
    assert server.system_volume is not None and server.system_volume.id == "r"
    assert Server.model_validate({"id": "s"}).system_volume is None


# ------------------------------------------------------------------------------------------ images, keys, volumes


def test_image_fields_and_cloud_init() -> None:
    image = Image.model_validate(
        {
            "id": IMAGE,
            "name": "Ubuntu 22.04",
            "status": "active",
            "__os_type": "Linux",
            "__platform": "Ubuntu",
            "__os_version": "Ubuntu 22.04 server 64bit",
            "min_disk": 40,
            "min_ram": "1024",
            "__support_fc_inject": "true",
            "__imagetype": "gold",
        }
    )
    assert (image.os_type, image.platform, image.min_disk, image.min_ram) == ("Linux", "Ubuntu", 40, 1024)
    assert image.cloud_init is False
    assert Image.model_validate({"id": "i", "__support_fc_inject": "false"}).cloud_init is True
    assert Image.model_validate({"id": "i"}).cloud_init is True
    assert Image.model_validate({"id": "i", "__support_fc_inject": True}).cloud_init is False


def test_keypair_and_volume() -> None:
    kp = KeyPair.model_validate({"name": "kp", "fingerprint": "aa:bb", "type": "ssh", "public_key": "ssh-rsa"})
    assert kp.name == "kp" and kp.type == "ssh"
    vol = Volume.model_validate({"id": "v", "size": 40, "bootable": "true", "status": "in-use"})
    assert vol.size == 40 and vol.bootable is True
    assert Volume.model_validate({"id": "v", "size": "100", "bootable": "false"}).bootable is False


# ------------------------------------------------------------------------------------------ jobs


OFFICIAL_JOB = {
    "status": "SUCCESS",
    "entities": {
        "sub_jobs_total": 1,
        "sub_jobs": [
            {
                "status": "SUCCESS",
                "entities": {"server_id": "bae51750-0089-41a1-9b18-5c777978ff6d"},
                "job_id": "2c9eb2c5544cbf6101544f0635672b60",
                "job_type": "createSingleServer",
                "begin_time": "2016-04-25T20:04:47.591Z",
                "end_time": "2016-04-25T20:08:21.328Z",
                "error_code": None,
                "fail_reason": None,
            }
        ],
    },
    "job_id": "2c9eb2c5544cbf6101544f0602af2b4f",
    "job_type": "createServer",
    "begin_time": "2016-04-25T20:04:34.604Z",
    "end_time": "2016-04-25T20:08:41.593Z",
    "error_code": None,
    "fail_reason": None,
}


def test_official_job_example() -> None:
    job = Job.model_validate(OFFICIAL_JOB)
    assert job.succeeded and job.is_finished and not job.failed
    assert job.server_id == "bae51750-0089-41a1-9b18-5c777978ff6d"  # from the sub-job
    assert len(job.sub_jobs) == 1 and job.sub_jobs[0].job_type == "createSingleServer"
    assert job.end_time == datetime(2016, 4, 25, 20, 8, 41, 593000, tzinfo=UTC)
    assert job.failure_messages() == []


@pytest.mark.parametrize("entities", [{"server_id": "srv"}, {"server_id": "srv", "sub_jobs": []}])
@pytest.mark.parametrize("end_time", ["", None])
def test_running_changeos_job_shapes(entities: dict[str, object], end_time: str | None) -> None:
    job = Job.model_validate(
        {
            "status": "RUNNING",
            "entities": entities,
            "job_id": "j",
            "job_type": "changeOS",
            "begin_time": "2024-01-01T00:00:00.000Z",
            "end_time": end_time,
            "error_code": None,
            "fail_reason": None,
        }
    )
    assert job.status == JobStatus.RUNNING and not job.is_finished
    assert job.server_id == "srv" and job.sub_jobs == [] and job.end_time is None


@pytest.mark.parametrize("entities", [[], {}, None])
def test_job_entities_list_or_empty(entities: object) -> None:
    job = Job.model_validate({"job_id": "j", "status": "INIT", "entities": entities})
    assert job.server_id is None and job.sub_jobs == []


def test_unknown_status_is_kept() -> None:
    job = Job.model_validate({"job_id": "j", "status": "PENDING_PAYMENT", "surprise": {"x": 1}})
    assert job.status == "PENDING_PAYMENT" == JobStatus.PENDING_PAYMENT and not job.is_finished
    assert Job.model_validate({"job_id": "j", "status": "QUEUED_SOMEWHERE"}).status == "QUEUED_SOMEWHERE"


def test_failed_job_messages() -> None:
    job = Job.model_validate(
        {
            "job_id": "j",
            "status": "FAIL",
            "error_code": "Ecs.0031",
            "fail_reason": "The image does not exist.",
            "end_time": "not a time",
            "entities": {
                "server_id": "srv",
                "sub_jobs": [
                    {"job_id": "s1", "status": "FAIL", "entities": {"errorcode_message": "disk attach failed"}},
                    {"job_id": "s2", "status": "FAIL", "error_code": 500, "fail_reason": "boom", "entities": []},
                    {"job_id": "s3", "status": "FAIL", "entities": {"errorcode_message": "disk attach failed"}},
                ],
            },
        }
    )
    assert job.failed and job.end_time is None
    assert job.failure_messages() == ["Ecs.0031: The image does not exist.", "disk attach failed", "500: boom"]
