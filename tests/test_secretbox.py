import pickle

import pytest
from pydantic import SecretStr

from bot.secretbox import SecretBox, SecretBoxError

CANARY = "Canary-Pw-7781!xyz"


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
