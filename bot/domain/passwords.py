"""Huawei Cloud's admin password rules (HW-0204), checked before anyone approves so the cloud never has to refuse.

Pure code: the plan card, the modal and `ChangeOsOption` all ask the same function, so they can never disagree.
"""

from __future__ import annotations

import secrets
import string

SPECIALS = "!@$%^-_=+[{}]:,./?~#*"
"""The special characters Huawei accepts in an ECS admin password (HW-0204, zh edition)."""

MIN_LENGTH = 8
MAX_LENGTH = 26
WINDOWS_USERNAME = "Administrator"

# Generated passwords avoid `_`, `*`, `~` and `` ` `` (Slack markup) and brackets/commas/colons/slashes (easy to
# misread or mangle when pasted); what remains is still a valid subset of SPECIALS.
_GENERATOR_SPECIALS = "!@$%^-=+.?#"
_GENERATED_LENGTH = 20

_ALLOWED = frozenset(string.ascii_letters + string.digits + SPECIALS)
_CLASSES = (
    ("uppercase letters", frozenset(string.ascii_uppercase)),
    ("lowercase letters", frozenset(string.ascii_lowercase)),
    ("digits", frozenset(string.digits)),
    ("special characters", frozenset(SPECIALS)),
)


def _is_windows(os_type: str) -> bool:
    return os_type.strip().lower() == "windows"


def _username_problems(password: str, username: str) -> list[str]:
    """Windows rules; the password itself is never quoted back, only the (public) user name."""
    folded = password.casefold()
    name = username.casefold()
    if not name:
        return []
    if name in folded:
        return [f"The password must not contain the user name '{username}'."]
    if name[::-1] in folded:
        return [f"The password must not contain the user name '{username}' spelled backwards."]
    if any(name[i : i + 3] in folded for i in range(len(name) - 2)):
        return [
            f"The password must not contain more than two consecutive characters of the user name '{username}' "
            "(in any letter case)."
        ]
    return []


def password_problems(password: str, *, os_type: str = "Linux", username: str | None = None) -> list[str]:
    """Every reason the cloud would reject `password`, as sentences a person can act on; empty when it is fine.

    The Windows user-name rules apply to Windows (user `Administrator` unless `username` says otherwise) and to any
    OS when a `username` is given explicitly. Messages never repeat any part of the password.
    """
    problems: list[str] = []
    length = len(password)
    if not MIN_LENGTH <= length <= MAX_LENGTH:
        problems.append(f"The password must be {MIN_LENGTH} to {MAX_LENGTH} characters long (it has {length}).")
    if any(ch not in _ALLOWED for ch in password):
        spaces = " (spaces are not allowed either)" if any(ch.isspace() for ch in password) else ""
        problems.append(
            "The password contains characters that are not allowed"
            f"{spaces}: use only letters A-Z and a-z, digits 0-9 and these special characters: {SPECIALS}"
        )
    missing = [label for label, chars in _CLASSES if not any(ch in chars for ch in password)]
    if len(missing) > 1:
        problems.append(
            "The password must contain at least three of: uppercase letters, lowercase letters, digits and "
            f"special characters ({SPECIALS}); add {' or '.join(missing)}."
        )
    if username is None and _is_windows(os_type):
        username = WINDOWS_USERNAME
    if username:
        problems.extend(_username_problems(password, username))
    return problems


def generate_password(os_type: str = "Linux") -> str:
    """A strong random password that always passes `password_problems` (all four character classes present)."""
    pools = (string.ascii_uppercase, string.ascii_lowercase, string.digits, _GENERATOR_SPECIALS)
    alphabet = "".join(pools)
    while True:
        chars = [secrets.choice(pool) for pool in pools]
        chars += [secrets.choice(alphabet) for _ in range(_GENERATED_LENGTH - len(chars))]
        # Fisher-Yates with `secrets` so the guaranteed characters do not sit at fixed positions.
        for i in range(len(chars) - 1, 0, -1):
            j = secrets.randbelow(i + 1)
            chars[i], chars[j] = chars[j], chars[i]
        candidate = "".join(chars)
        if not password_problems(candidate, os_type=os_type):
            return candidate
