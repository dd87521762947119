"""Encrypts an admin password while it waits for approval (ECSBOT_SECRET_KEY).

Fernet (AES-128-CBC + HMAC-SHA256, authenticated). `ECSBOT_SECRET_KEY` may be a Fernet key (`SecretBox.generate_key()`,
44 URL-safe base64 characters) used as is, or any other passphrase, from which a Fernet key is derived with scrypt
(n=2**15, r=8, p=1) and a fixed application salt. A fixed salt is deliberate: the same passphrase must give the same
key after a restart, and the key protects short-lived data only. Prefer a generated key (`ecsbot gen-key`): it skips
the derivation.

Rotation: the box is built with the current key and any earlier ones (ECSBOT_SECRET_KEYS_OLD). The current key
encrypts; every key decrypts; `rotate` re-encrypts a token under the current key, keeping its timestamp so a TTL
still counts from the original encryption.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from pydantic import SecretStr

_SALT = b"ecs-changeos-bot/secretbox/v1"
_SCRYPT = {"n": 2**15, "r": 8, "p": 1, "maxmem": 64 * 1024 * 1024}
_MIN_PASSPHRASE = 12
GEN_KEY_HINT = "Generate one with: ecsbot gen-key"


class SecretBoxError(Exception):
    """A key or ciphertext problem; the message never includes key or plaintext."""


def _fernet_key(key: str | bytes, name: str = "ECSBOT_SECRET_KEY") -> bytes:
    raw = key.encode() if isinstance(key, str) else bytes(key)
    raw = raw.strip()
    if not raw:
        raise SecretBoxError(f"{name} is empty. {GEN_KEY_HINT}")
    if len(raw) == 44:
        try:
            if len(base64.urlsafe_b64decode(raw)) == 32:
                return raw
        except (binascii.Error, ValueError):
            pass
    if len(raw) < _MIN_PASSPHRASE:
        raise SecretBoxError(
            f"{name} is too short ({len(raw)} characters). Use a generated Fernet key (ecsbot gen-key) "
            f"or a passphrase of at least {_MIN_PASSPHRASE} characters."
        )
    derived = hashlib.scrypt(raw, salt=_SALT, dklen=32, **_SCRYPT)
    return base64.urlsafe_b64encode(derived)


def _plain(key: str | bytes | SecretStr) -> str | bytes:
    return key.get_secret_value() if isinstance(key, SecretStr) else key


class SecretBox:
    __slots__ = ("_current", "_fernet")

    def __init__(self, key: str | bytes | SecretStr, *, old_keys: Iterable[str | bytes | SecretStr] = ()) -> None:
        current = Fernet(_fernet_key(_plain(key)))
        earlier = [
            Fernet(_fernet_key(_plain(old), f"ECSBOT_SECRET_KEYS_OLD (key {n})")) for n, old in enumerate(old_keys, 1)
        ]
        self._current = current
        self._fernet = MultiFernet([current, *earlier])

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, secret: SecretStr | str) -> bytes:
        value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        return self._fernet.encrypt(value.encode())

    def rotate(self, token: bytes) -> bytes:
        """The same secret encrypted under the current key (for `ecsbot rotate-key`); its timestamp is kept."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise SecretBoxError(
                "Could not re-encrypt a stored secret: none of ECSBOT_SECRET_KEY and ECSBOT_SECRET_KEYS_OLD opens it. "
                "Add the key it was encrypted with to ECSBOT_SECRET_KEYS_OLD."
            ) from None

    def is_current(self, token: bytes) -> bool:
        """True when the current key opens the token, i.e. `rotate` has nothing to do for it."""
        try:
            self._current.decrypt(token)
        except InvalidToken:
            return False
        return True

    def decrypt(self, token: bytes, *, ttl: int | None = None) -> SecretStr:
        try:
            return SecretStr(self._fernet.decrypt(token, ttl=ttl).decode())
        except InvalidToken:
            raise SecretBoxError(
                "Could not decrypt a stored secret: it was encrypted with another ECSBOT_SECRET_KEY (after a key "
                "change, list the old key in ECSBOT_SECRET_KEYS_OLD), was damaged, or is too old. Ask the requester "
                "to enter the password again."
            ) from None

    def __repr__(self) -> str:
        return "SecretBox(key=<hidden>)"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("SecretBox cannot be pickled (it holds a key)")
