"""Encrypts an admin password while it waits for approval (ECSBOT_SECRET_KEY).

Fernet (AES-128-CBC + HMAC-SHA256, authenticated). `ECSBOT_SECRET_KEY` may be a Fernet key (`SecretBox.generate_key()`,
44 URL-safe base64 characters) used as is, or any other passphrase, from which a Fernet key is derived with scrypt
(n=2**15, r=8, p=1) and a fixed application salt. A fixed salt is deliberate: the same passphrase must give the same
key after a restart, and the key protects short-lived data only. Prefer a generated key: it skips the derivation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

_SALT = b"ecs-changeos-bot/secretbox/v1"
_SCRYPT = {"n": 2**15, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024}
_MIN_PASSPHRASE = 12


class SecretBoxError(Exception):
    """A key or ciphertext problem; the message never includes key or plaintext."""


def _fernet_key(key: str | bytes) -> bytes:
    raw = key.encode() if isinstance(key, str) else bytes(key)
    raw = raw.strip()
    if not raw:
        raise SecretBoxError(
            "ECSBOT_SECRET_KEY is empty. Generate one with: "
            "python -c 'from bot.secretbox import SecretBox; print(SecretBox.generate_key())'"
        )
    if len(raw) == 44:
        try:
            if len(base64.urlsafe_b64decode(raw)) == 32:
                return raw
        except (binascii.Error, ValueError):
            pass
    if len(raw) < _MIN_PASSPHRASE:
        raise SecretBoxError(
            f"ECSBOT_SECRET_KEY is too short ({len(raw)} characters). Use a generated Fernet key "
            f"or a passphrase of at least {_MIN_PASSPHRASE} characters."
        )
    derived = hashlib.scrypt(raw, salt=_SALT, dklen=32, **_SCRYPT)
    return base64.urlsafe_b64encode(derived)


class SecretBox:
    __slots__ = ("_fernet",)

    def __init__(self, key: str | bytes | SecretStr) -> None:
        if isinstance(key, SecretStr):
            key = key.get_secret_value()
        self._fernet = Fernet(_fernet_key(key))

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, secret: SecretStr | str) -> bytes:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        return self._fernet.encrypt(value.encode())

    def decrypt(self, token: bytes, *, ttl: int | None = None) -> SecretStr:
        try:
            return SecretStr(self._fernet.decrypt(token, ttl=ttl).decode())
        except InvalidToken:
            raise SecretBoxError(
                "Could not decrypt a stored secret: it was encrypted with another ECSBOT_SECRET_KEY, "
                "was damaged, or is too old. Ask the requester to enter the password again."
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(key=<hidden>)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SecretBox cannot be pickled (it holds a key)")
