from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.domain.request import ChangeRequest
from bot.store import Store


def make_request(**kw) -> ChangeRequest:
    base = dict(
        requester="U01REQ0001",
        origin_channel="C01ORIGIN1",
        server_id="srv-1",
        server_name="web-01",
        target_image_id="img-1",
        target_image_name="ubuntu-22.04",
        keyname="ops-key",
        reason="disk full",
        approvals_channel="C01APPROVE1",
    )
    base.update(kw)
    return ChangeRequest(**base)


@pytest.fixture
def new_request():
    return make_request


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ecsbot.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    s = Store(db_path)
    yield s
    s.close()
