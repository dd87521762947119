import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.domain.request import RequestState
from bot.secretbox import SecretBox, SecretBoxError
from bot.store import Store

CANARY = "Canary-Pw-7781!xyz"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def raw_bytes(path: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(path) + suffix)
        if p.exists():
            out += p.read_bytes()
    return out


# --- secrets ---------------------------------------------------------------------------------------------------------


def test_secret_round_trip_and_expiry(db_path):
    clock = Clock(T0)
    with Store(db_path, clock=clock) as store:
        box = SecretBox(SecretBox.generate_key())
        store.put_secret("CR-ABCDEF", box.encrypt(SecretStr(CANARY)), expires_at=T0 + timedelta(minutes=10))
        got = store.get_secret("CR-ABCDEF")
        assert isinstance(got, bytes)
        assert box.decrypt(got).get_secret_value() == CANARY
        assert store.get_secret("missing") is None
        clock.now = T0 + timedelta(minutes=10)
        assert store.get_secret("CR-ABCDEF") is None  # expired
        assert store.purge_expired() == 1


def test_put_secret_refuses_text(store):
    with pytest.raises(TypeError, match="ciphertext"):
        store.put_secret("k", CANARY, expires_at=None)


def test_move_and_delete_secret(store):
    store.put_secret("token:abc", b"ciphertext-1", expires_at=None)
    store.put_secret("CR-ABCDEF", b"stale", expires_at=None)
    assert store.move_secret("token:abc", "CR-ABCDEF")
    assert store.get_secret("token:abc") is None
    assert store.get_secret("CR-ABCDEF") == b"ciphertext-1"
    assert not store.move_secret("token:abc", "x")
    assert store.delete_secret("CR-ABCDEF")
    assert not store.delete_secret("CR-ABCDEF")
    assert store.get_secret("CR-ABCDEF") is None


def test_canary_never_in_the_database_files(db_path, new_request, caplog):
    caplog.set_level(logging.DEBUG)
    box = SecretBox("a long passphrase for the tests")
    with Store(db_path) as store:
        req = store.create(new_request(login="password", keyname=None, has_password=True), actor="u")
        ciphertext = box.encrypt(SecretStr(CANARY))
        store.put_secret(req.id, ciphertext, expires_at=None)
        store.transition(req.id, to=RequestState.APPROVED, expected=RequestState.PENDING_APPROVAL, actor="a")
        store.checkpoint()
        before = raw_bytes(db_path)
        assert ciphertext in before  # the check reads the right files
        assert CANARY.encode() not in before
        assert box.decrypt(store.get_secret(req.id)).get_secret_value() == CANARY
        assert store.delete_secret(req.id)
        store.checkpoint()
        after = raw_bytes(db_path)
        assert CANARY.encode() not in after
        assert ciphertext not in after  # secure_delete overwrote it, and the WAL copy went with the checkpoint
        assert ciphertext[:40] not in after
    assert CANARY not in caplog.text


# --- tokens ----------------------------------------------------------------------------------------------------------


def test_token_single_use(store):
    store.put_token("h1", purpose="password", subject="CR-ABCDEF", user_id="U1", expires_at=T0 + timedelta(minutes=5))
    peek = store.peek_token("h1", user_id="U1", now=T0)
    assert peek["subject"] == "CR-ABCDEF" and peek["used_at"] is None
    assert store.peek_token("h1", user_id="U1", now=T0)  # peeking does not use it up
    got = store.consume_token("h1", user_id="U1", now=T0)
    assert got["purpose"] == "password" and got["subject"] == "CR-ABCDEF" and got["used_at"] == T0
    assert store.consume_token("h1", user_id="U1", now=T0) is None
    assert store.peek_token("h1", user_id="U1", now=T0) is None


def test_token_expiry_wrong_user_unknown(store):
    store.put_token("h2", purpose="password", subject="s", user_id="U1", expires_at=T0 + timedelta(minutes=5))
    assert store.consume_token("h2", user_id="U2", now=T0) is None  # another user's
    assert store.consume_token("h2", user_id="U1", now=T0 + timedelta(minutes=5)) is None  # expired
    assert store.peek_token("h2", user_id="U1", now=T0 + timedelta(minutes=6)) is None
    assert store.consume_token("unknown", user_id="U1", now=T0) is None
    # the wrong user's attempt did not burn it
    assert store.consume_token("h2", user_id="U1", now=T0 + timedelta(minutes=4)) is not None


def test_token_consumed_once_across_connections(db_path):
    a, b = Store(db_path), Store(db_path)
    try:
        a.put_token("h3", purpose="p", subject="s", user_id="U1", expires_at=T0 + timedelta(minutes=5))
        first = b.consume_token("h3", user_id="U1", now=T0)
        second = a.consume_token("h3", user_id="U1", now=T0)
        assert first is not None and second is None
    finally:
        a.close()
        b.close()


# --- leases ----------------------------------------------------------------------------------------------------------


def test_lease_semantics(db_path):
    a, b = Store(db_path), Store(db_path)
    try:
        assert a.acquire_lease("tracker", "proc-a", 30, now=1000.0)
        assert not b.acquire_lease("tracker", "proc-b", 30, now=1010.0)  # held
        assert a.acquire_lease("tracker", "proc-a", 30, now=1020.0)  # renew: now until 1050
        assert not b.acquire_lease("tracker", "proc-b", 30, now=1049.0)
        assert a.lease_owner("tracker", now=1049.0) == "proc-a"
        assert b.acquire_lease("tracker", "proc-b", 30, now=1050.0)  # expired: taken over
        assert not a.acquire_lease("tracker", "proc-a", 30, now=1051.0)
        a.release_lease("tracker", "proc-a")  # not ours: no effect
        assert b.lease_owner("tracker", now=1051.0) == "proc-b"
        b.release_lease("tracker", "proc-b")
        assert b.lease_owner("tracker", now=1051.0) is None
        assert a.acquire_lease("tracker", "proc-a", 30, now=1052.0)
        assert a.acquire_lease("other", "proc-b", 30, now=1052.0)  # leases are independent
    finally:
        a.close()
        b.close()


# --- SecretBox -------------------------------------------------------------------------------------------------------


def test_secretbox_fernet_key_and_passphrase():
    key = SecretBox.generate_key()
    box = SecretBox(key)
    token = box.encrypt(SecretStr(CANARY))
    assert CANARY.encode() not in token
    assert SecretBox(key.encode()).decrypt(token).get_secret_value() == CANARY
    assert SecretBox(SecretStr(key)).decrypt(token).get_secret_value() == CANARY
    p1 = SecretBox("correct horse battery staple")
    assert SecretBox("correct horse battery staple").decrypt(p1.encrypt("x")).get_secret_value() == "x"


def test_secretbox_wrong_key_is_a_clear_error_without_secrets():
    token = SecretBox(SecretBox.generate_key()).encrypt(SecretStr(CANARY))
    other_key = SecretBox.generate_key()
    with pytest.raises(SecretBoxError) as exc:
        SecretBox(other_key).decrypt(token)
    msg = str(exc.value)
    assert "another ECSBOT_SECRET_KEY" in msg
    assert CANARY not in msg and other_key not in msg
    assert exc.value.__cause__ is None and exc.value.__suppress_context__


def test_secretbox_bad_keys():
    with pytest.raises(SecretBoxError, match="empty"):
        SecretBox("  ")
    with pytest.raises(SecretBoxError, match="too short"):
        SecretBox("short")


def test_secretbox_repr_hides_the_key():
    key = SecretBox.generate_key()
    box = SecretBox(key)
    assert key not in repr(box) and key not in str(box)
    assert repr(box) == "SecretBox(key=<hidden>)"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(box)


def test_page_sessions_sign_in_once_and_die_with_their_draft(store):
    from datetime import timedelta

    later = store._clock() + timedelta(minutes=5)
    store.put_session("s1", draft_id="d1", os_type="Linux", user_id="U1", expires_at=later)
    store.put_session("s2", draft_id="d2", os_type="Linux", user_id="U1", expires_at=later)
    assert store.get_session("s1")["signed_in_user"] is None
    assert store.start_signin("s1", state_hash="st", binding_hash="b", nonce="n")
    assert store.session_by_state("st")["sid_hash"] == "s1"
    assert store.finish_signin("s1", state_hash="st", user_id="U1")
    assert not store.finish_signin("s1", state_hash="st", user_id="U1")  # a state works once
    assert store.get_session("s1")["signed_in_user"] == "U1" and store.session_by_state("st") is None
    assert store.put_secret_for_session("s1", "draft:d1", b"ct", expires_at=later, set_by="U1", set_via="slack-signin")
    assert store.get_session("s1") is None  # used up by the password it carried
    assert store.secret_info("draft:d1")["set_by"] == "U1"
    assert store.revoke_sessions("d2") == ["s2"]
    assert not store.put_secret_for_session("s2", "draft:d2", b"ct", expires_at=later, set_by="U1", set_via="link")
    assert store.get_secret("draft:d2") is None


def test_revoke_subject_and_purge_leave_nothing(store):
    from datetime import timedelta

    now = store._clock()
    store.put_token("a", purpose="password", subject="d1|Linux", user_id="U1", expires_at=now + timedelta(minutes=5))
    store.put_token("b", purpose="password", subject="d10|Linux", user_id="U1", expires_at=now + timedelta(minutes=5))
    store.put_token("c", purpose="other", subject="d1|Linux", user_id="U1", expires_at=now + timedelta(minutes=5))
    assert store.revoke_subject("password", "d1|") == ["a"]  # a prefix with its separator: d10 is another draft
    store.put_session("s", draft_id="d1", os_type="Linux", user_id="U1", expires_at=now + timedelta(seconds=1))
    assert store.purge_expired(now + timedelta(minutes=6)) == 3  # b, c and the session
    counts = {t: store.db.execute(f"SELECT count(*) FROM [{t}]").fetchone()[0] for t in ("tokens", "page_sessions")}
    assert counts == {"tokens": 0, "page_sessions": 0}
