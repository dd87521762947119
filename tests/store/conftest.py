from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path

import pytest

from bot.domain.request import ChangeRequest, utcnow
from bot.store import Store, open_store


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


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, db_path: Path) -> str:
    """Where the stores of one test keep their data: every contract test runs on both engines."""
    if request.param == "sqlite":
        return str(db_path)
    return request.getfixturevalue("postgres").fresh_url()


@pytest.fixture
async def connect(database: str) -> AsyncIterator[Callable[..., Store]]:
    """Opens a store on the test's database: each call is another connection, as another process would have."""
    opened: list[Store] = []

    def make(clock: Callable[[], datetime] = utcnow) -> Store:
        store = open_store(database, clock=clock)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


@pytest.fixture
def store(connect: Callable[..., Store]) -> Store:
    return connect()
