"""History, the streamed audit export, retention and key rotation: the same promises from both engines."""

from datetime import UTC, datetime, timedelta

import pytest

from bot.domain.request import RequestState
from bot.store.protocol import PRUNED_ACTION, PRUNED_ACTOR

S = RequestState
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def ended(new_request, n: int, *, server: str = "srv-1", name: str = "web-01", **fields):
    """A request created n days after T0 and ended an hour later."""
    at = T0 + timedelta(days=n)
    return new_request(
        at=at, state=S.SUCCEEDED, finished_at=at + timedelta(hours=1), server_id=server, server_name=name, **fields
    )


async def test_history_is_newest_first_and_filters_by_server_requester_and_age(store, new_request):
    a = await store.create(ended(new_request, 1), actor="u")
    b = await store.create(ended(new_request, 2, server="srv-2", name="DB-01", requester="U02OTHER01"), actor="u")
    c = await store.create(ended(new_request, 3), actor="u")
    assert [r.id for r in await store.history()] == [c.id, b.id, a.id]
    assert [r.id for r in await store.history(limit=2)] == [c.id, b.id]
    assert [r.id for r in await store.history(server="web-01")] == [c.id, a.id]
    assert [r.id for r in await store.history(server="db-01")] == [b.id]  # a name in any case
    assert [r.id for r in await store.history(server="srv-2")] == [b.id]  # or the id
    assert [r.id for r in await store.history(requester="U02OTHER01")] == [b.id]
    assert [r.id for r in await store.history(since=T0 + timedelta(days=2))] == [c.id, b.id]
    assert await store.history(server="nope") == []


async def test_audit_since_streams_the_whole_trail_in_order_page_by_page(store, new_request):
    ids = [(await store.create(ended(new_request, n, server=f"srv-{n}"), actor="u")).id for n in range(7)]
    await store.record(ids[0], actor="U1", action="note", detail="later")
    rows = [row async for row in store.audit_since(page=3)]
    assert [r.request_id for r in rows] == [*ids, ids[0]]
    assert [r.seq for r in rows] == sorted(r.seq for r in rows) and len({r.seq for r in rows}) == 8
    assert rows[-1].action == "note" and rows[-1].detail == "later" and rows[-1].actor == "U1"
    assert rows[0].to_state == "succeeded" and rows[0].from_state is None
    # `since` compares the row's time: the "created" rows are stamped with each request's creation
    recent = [r.request_id async for r in store.audit_since(T0 + timedelta(days=5), page=2)]
    assert recent == [ids[5], ids[6], ids[0]]
    assert [r async for r in store.audit_since(datetime(2100, 1, 1, tzinfo=UTC))] == []


async def test_prune_removes_old_ended_requests_keeps_each_servers_newest_and_records_it(store, new_request):
    old = [await store.create(ended(new_request, n), actor="u") for n in range(3)]
    newest = await store.create(ended(new_request, 4), actor="u")  # old too, but the server's newest
    await store.record(old[0].id, actor="U1", action="note")
    other = await store.create(ended(new_request, 1, server="srv-2"), actor="u")  # alone on its server: kept
    recent = await store.create(ended(new_request, 100, server="srv-3"), actor="u")
    recent_old = await store.create(ended(new_request, 50, server="srv-3"), actor="u")  # older, not past the cut
    live = await store.create(new_request(at=T0, server_id="srv-4"), actor="u")  # live: never pruned
    await store.create(ended(new_request, 101, server="srv-4"), actor="u")

    pruned = await store.prune(T0 + timedelta(days=30), batch=2)
    assert (pruned.requests, pruned.audit_rows) == (3, 4)
    for gone in old:
        assert await store.get(gone.id) is None and await store.audit(gone.id) == []
    for kept in (newest, other, recent, recent_old, live):
        assert await store.get(kept.id) is not None
    notes = [e for e in await store.audit(newest.id) if e.action == PRUNED_ACTION]
    assert [e.actor for e in notes] == [PRUNED_ACTOR, PRUNED_ACTOR]  # one per batch of 2
    assert " ".join(e.detail for e in notes).count("CR-") == 3
    assert old[0].id in notes[0].detail and "3 audit rows" in notes[0].detail  # two "created", one note
    assert (await store.prune(T0 + timedelta(days=30))).requests == 0  # nothing left to do


async def test_prune_also_purges_expired_secrets(store):
    await store.put_secret("draft:x", b"cipher", expires_at=datetime(2000, 1, 1, tzinfo=UTC))
    await store.put_secret("draft:y", b"cipher", expires_at=None)
    pruned = await store.prune(T0)
    assert pruned.expired == 1 and await store.get_secret("draft:y") == b"cipher"


async def test_reencrypt_secrets_replaces_every_ciphertext_in_one_transaction(store):
    await store.put_secret("a", b"old-a", expires_at=None)
    await store.put_secret("b", b"new-b", expires_at=None)
    assert await store.reencrypt_secrets(lambda c: None if c.startswith(b"new") else b"new" + c[3:]) == (1, 1)
    assert await store.get_secret("a") == b"new-a" and await store.get_secret("b") == b"new-b"

    def broken(c: bytes) -> bytes:
        if c == b"new-b":
            raise ValueError("cannot open")
        return b"x"

    with pytest.raises(ValueError):
        await store.reencrypt_secrets(broken)
    assert await store.get_secret("a") == b"new-a"  # rolled back
