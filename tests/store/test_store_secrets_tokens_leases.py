from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr

from bot.domain.request import utcnow
from bot.secretbox import SecretBox

CANARY = "Canary-Pw-7781!xyz"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# --- secrets ---------------------------------------------------------------------------------------------------------


async def test_secret_round_trip_and_expiry(connect):
    clock = Clock(T0)
    store = connect(clock=clock)
    box = SecretBox(SecretBox.generate_key())
    await store.put_secret("CR-ABCDEF", box.encrypt(SecretStr(CANARY)), expires_at=T0 + timedelta(minutes=10))
    got = await store.get_secret("CR-ABCDEF")
    assert isinstance(got, bytes)
    assert box.decrypt(got).get_secret_value() == CANARY
    assert await store.get_secret("missing") is None
    clock.now = T0 + timedelta(minutes=10)
    assert await store.get_secret("CR-ABCDEF") is None  # expired
    assert await store.purge_expired() == 1


async def test_put_secret_refuses_text(store):
    with pytest.raises(TypeError, match="ciphertext"):
        await store.put_secret("k", CANARY, expires_at=None)


async def test_delete_secret(store):
    await store.put_secret("CR-ABCDEF", b"ciphertext-1", expires_at=None)
    assert await store.get_secret("CR-ABCDEF") == b"ciphertext-1"
    assert await store.delete_secret("CR-ABCDEF")
    assert not await store.delete_secret("CR-ABCDEF")
    assert await store.get_secret("CR-ABCDEF") is None


# --- tokens ----------------------------------------------------------------------------------------------------------


async def test_token_single_use(store):
    expires = T0 + timedelta(minutes=5)
    await store.put_token("h1", purpose="password", subject="CR-ABCDEF", user_id="U1", expires_at=expires)
    peek = await store.peek_token("h1", user_id="U1", now=T0)
    assert peek["subject"] == "CR-ABCDEF" and peek["used_at"] is None
    assert await store.peek_token("h1", user_id="U1", now=T0)  # peeking does not use it up
    got = await store.consume_token("h1", user_id="U1", now=T0)
    assert got["purpose"] == "password" and got["subject"] == "CR-ABCDEF" and got["used_at"] == T0
    assert await store.consume_token("h1", user_id="U1", now=T0) is None
    assert await store.peek_token("h1", user_id="U1", now=T0) is None


async def test_token_expiry_wrong_user_unknown(store):
    await store.put_token("h2", purpose="password", subject="s", user_id="U1", expires_at=T0 + timedelta(minutes=5))
    assert await store.consume_token("h2", user_id="U2", now=T0) is None  # another user's
    assert await store.consume_token("h2", user_id="U1", now=T0 + timedelta(minutes=5)) is None  # expired
    assert await store.peek_token("h2", user_id="U1", now=T0 + timedelta(minutes=6)) is None
    assert await store.consume_token("unknown", user_id="U1", now=T0) is None
    # the wrong user's attempt did not burn it
    assert await store.consume_token("h2", user_id="U1", now=T0 + timedelta(minutes=4)) is not None


async def test_token_consumed_once_across_connections(connect):
    a, b = connect(), connect()
    await a.put_token("h3", purpose="p", subject="s", user_id="U1", expires_at=T0 + timedelta(minutes=5))
    first = await b.consume_token("h3", user_id="U1", now=T0)
    second = await a.consume_token("h3", user_id="U1", now=T0)
    assert first is not None and second is None


# --- leases ----------------------------------------------------------------------------------------------------------


async def test_lease_semantics(connect):
    a, b = connect(), connect()
    assert await a.acquire_lease("tracker", "proc-a", 30, now=1000.0)
    assert not await b.acquire_lease("tracker", "proc-b", 30, now=1010.0)  # held
    assert await a.acquire_lease("tracker", "proc-a", 30, now=1020.0)  # renew: now until 1050
    assert not await b.acquire_lease("tracker", "proc-b", 30, now=1049.0)
    assert await a.lease_owner("tracker", now=1049.0) == "proc-a"
    assert await b.acquire_lease("tracker", "proc-b", 30, now=1050.0)  # expired: taken over
    assert not await a.acquire_lease("tracker", "proc-a", 30, now=1051.0)
    await a.release_lease("tracker", "proc-a")  # not ours: no effect
    assert await b.lease_owner("tracker", now=1051.0) == "proc-b"
    await b.release_lease("tracker", "proc-b")
    assert await b.lease_owner("tracker", now=1051.0) is None
    assert await a.acquire_lease("tracker", "proc-a", 30, now=1052.0)
    assert await a.acquire_lease("other", "proc-b", 30, now=1052.0)  # leases are independent
    # a, b, a: every change of owner counts, a release included; renewals do not
    assert await a.lease_epoch("tracker") == 3 and await a.lease_epoch("other") == 1
    assert await a.lease_epoch("never") == 0


async def test_page_sessions_sign_in_once_and_die_with_their_draft(store):
    later = utcnow() + timedelta(minutes=5)
    await store.put_session("s1", draft_id="d1", os_type="Linux", user_id="U1", expires_at=later)
    await store.put_session("s2", draft_id="d2", os_type="Linux", user_id="U1", expires_at=later)
    assert (await store.get_session("s1"))["signed_in_user"] is None
    assert await store.start_signin("s1", state_hash="st", binding_hash="b", nonce="n")
    assert (await store.session_by_state("st"))["sid_hash"] == "s1"
    assert await store.finish_signin("s1", state_hash="st", user_id="U1")
    assert not await store.finish_signin("s1", state_hash="st", user_id="U1")  # a state works once
    assert (await store.get_session("s1"))["signed_in_user"] == "U1" and await store.session_by_state("st") is None
    kept = await store.put_secret_for_session(
        "s1", "draft:d1", b"ct", expires_at=later, set_by="U1", set_via="slack-signin"
    )
    assert kept
    assert await store.get_session("s1") is None  # used up by the password it carried
    assert (await store.secret_info("draft:d1"))["set_by"] == "U1"
    assert await store.revoke_sessions("d2") == ["s2"]
    kept = await store.put_secret_for_session("s2", "draft:d2", b"ct", expires_at=later, set_by="U1", set_via="link")
    assert not kept
    assert await store.get_secret("draft:d2") is None


async def test_revoke_subject_and_purge_leave_nothing(store):
    now = utcnow()
    later = now + timedelta(minutes=5)
    await store.put_token("a", purpose="password", subject="d1|Linux", user_id="U1", expires_at=later)
    await store.put_token("b", purpose="password", subject="d10|Linux", user_id="U1", expires_at=later)
    await store.put_token("c", purpose="other", subject="d1|Linux", user_id="U1", expires_at=later)
    assert await store.revoke_subject("password", "d1|") == ["a"]  # a prefix with its separator: d10 is another draft
    await store.put_session("s", draft_id="d1", os_type="Linux", user_id="U1", expires_at=now + timedelta(seconds=1))
    assert await store.purge_expired(now + timedelta(minutes=6)) == 3  # b, c and the session
    assert await store.peek_token("b", user_id="U1", now=now) is None
    assert await store.peek_token("c", user_id="U1", now=now) is None
    assert await store.get_session("s", now=now) is None
