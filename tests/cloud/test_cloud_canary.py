"""Canary secrets: the SK and an admin password go over the wire and nowhere else (logs, reprs, errors)."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

from bot.cloud import ChangeOsOption, CloudAPIError, CloudError, OutcomeUnknownError

from .conftest import IMAGE_ID, PROJECT_ID, SERVER_ID, FakeCloud, Reply, make_client

CANARY_SK = "CANARY-SK-7f3a9c1e5b2d4f6a8c0e"
CANARY_PW = "Canary-Pw-1234!"
CHANGEOS = f"/v1/{PROJECT_ID}/cloudservers/{SERVER_ID}/changeos"


async def test_canary_never_leaks(caplog: pytest.LogCaptureFixture, json_logs) -> None:
    caplog.set_level(logging.DEBUG)
    cloud = FakeCloud(secret_key=CANARY_SK)
    await cloud.start()
    texts: list[str] = []
    try:
        cloud.script("GET", f"/v1/{PROJECT_ID}/cloudservers/{SERVER_ID}", Reply(json={"server": {"id": SERVER_ID}}))
        cloud.script(
            "POST",
            CHANGEOS,
            Reply(json={"job_id": "j-1"}),
            # A cloud message that echoes the request must not carry the password into our errors.
            Reply(400, {"error": {"code": "Ecs.0011", "message": f"adminpass {CANARY_PW} rejected"}}),
            Reply(action="close"),
        )
        option = ChangeOsOption(imageid=IMAGE_ID, adminpass=CANARY_PW)
        texts += [repr(option), str(option), option.model_dump_json(), repr(option.model_dump())]
        async with make_client(cloud.base_url, secret_key=CANARY_SK) as client:
            texts += [repr(client), repr(client.credentials), str(client.credentials)]
            await client.get_server(SERVER_ID)
            assert await client.change_os(SERVER_ID, option) == "j-1"
            for expected in (CloudAPIError, OutcomeUnknownError):
                with pytest.raises(expected) as info:
                    await client.change_os(SERVER_ID, option)
                error: CloudError = info.value
                texts += [str(error), repr(error), error.hint, repr(error.args)]
        for bad in ({"keyname": "k", "userid": "u"}, {"os_type": "Windows", "imageid": "not-a-uuid"}):
            with pytest.raises(ValidationError) as verr:
                ChangeOsOption(**{"imageid": IMAGE_ID, "adminpass": CANARY_PW, **bad})  # type: ignore[arg-type]
            texts += [str(verr.value), repr(verr.value), repr(verr.value.errors())]
    finally:
        await cloud.stop()

    # The test can fail: the secrets did travel (password in the body, SK proved by valid signatures) ...
    assert any(CANARY_PW.encode() in s.body for s in cloud.seen)
    assert all(s.signature_ok for s in cloud.seen)
    # ... and DEBUG logging of the client really ran.
    assert any(r.name.startswith("bot.cloud") and r.levelno == logging.DEBUG for r in caplog.records)
    assert any("ReadTimeout" in t or "RemoteProtocolError" in t for t in texts)

    texts.append(caplog.text)
    texts.append(json_logs.text)  # the JSON log format (ECSBOT_LOG_FORMAT=json), one object per line
    assert len(json_logs.entries()) >= len(caplog.records)  # every record, each line one JSON object
    texts += [r.getMessage() for r in caplog.records]
    texts += [repr(r.args) for r in caplog.records]
    for text in texts:
        assert CANARY_PW not in text
        assert CANARY_SK not in text
    assert "**********" in " ".join(texts)  # the scrubbed cloud message
