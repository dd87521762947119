"""SecretBox: Fernet keys and passphrases, no secret in reprs, and key rotation (the current key encrypts, earlier
keys still decrypt, `rotate` re-encrypts)."""

from __future__ import annotations

import pickle
import time

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from bot.config import Settings
from bot.secretbox import SecretBox, SecretBoxError

CANARY = "Canary-Pw-7781!xyz"
ROTATE_CANARY = "Canary-Rotate-Pw-1!"


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
        pickle.dumps(box)




def test_a_new_key_encrypts_and_old_keys_still_decrypt() -> None:
    old, older, new = SecretBox.generate_key(), "an older passphrase, long enough", SecretBox.generate_key()
    from_old, from_older = SecretBox(old).encrypt(ROTATE_CANARY), SecretBox(older).encrypt(ROTATE_CANARY)
    box = SecretBox(new, old_keys=[SecretStr(old), older])
    assert box.decrypt(from_old).get_secret_value() == ROTATE_CANARY
    assert box.decrypt(from_older).get_secret_value() == ROTATE_CANARY
    fresh = box.encrypt(ROTATE_CANARY)
    assert SecretBox(new).decrypt(fresh).get_secret_value() == ROTATE_CANARY  # the new key alone opens what it wrote
    with pytest.raises(SecretBoxError):
        SecretBox(old).decrypt(fresh)


def test_rotate_moves_a_token_to_the_current_key_and_keeps_its_age() -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    hour_ago = int(time.time()) - 3600
    written = Fernet(old.encode()).encrypt_at_time(ROTATE_CANARY.encode(), hour_ago)  # as the box wrote it an hour ago
    box = SecretBox(new, old_keys=[old])
    assert not box.is_current(written)
    rotated = box.rotate(written)
    assert box.is_current(rotated) and SecretBox(new).decrypt(rotated).get_secret_value() == ROTATE_CANARY
    assert SecretBox(new).decrypt(rotated, ttl=7200).get_secret_value() == ROTATE_CANARY
    with pytest.raises(SecretBoxError):
        SecretBox(new).decrypt(rotated, ttl=1800)  # still an hour old: a TTL counts from the first encryption
    assert box.is_current(box.rotate(rotated))


def test_rotate_without_the_old_key_says_which_setting_to_add() -> None:
    token = SecretBox(SecretBox.generate_key()).encrypt(ROTATE_CANARY)
    with pytest.raises(SecretBoxError, match="Add the key it was encrypted with to ECSBOT_SECRET_KEYS_OLD") as info:
        SecretBox(SecretBox.generate_key()).rotate(token)
    assert ROTATE_CANARY not in str(info.value)


def test_old_keys_come_comma_or_newline_separated_from_settings() -> None:
    a, b, c = (SecretBox.generate_key() for _ in range(3))
    settings = Settings.model_validate({"ECSBOT_SECRET_KEYS_OLD": f"{a}, {b}\n{c}\n"})
    assert [k.get_secret_value() for k in settings.old_secret_keys] == [a, b, c]
    assert {a, b, c} <= set(settings.secret_values())  # the log scrubber learns each of them
    assert a not in repr(settings)


def test_a_bad_old_key_is_named() -> None:
    with pytest.raises(SecretBoxError, match=r"ECSBOT_SECRET_KEYS_OLD \(key 2\) is too short"):
        SecretBox(SecretBox.generate_key(), old_keys=[SecretBox.generate_key(), "short"])
