"""Huawei's admin password rules for changeos (Ecs.0011), as the cloud checks them.

A private copy on purpose: the real cloud has its own check, and the simulator must not lean on the bot's code.
"""

from __future__ import annotations

SPECIALS = frozenset("!@$%^-_=+[{}]:,./?~#*")
USERS = {"Windows": "Administrator", "Linux": "root"}


def password_problem(password: str, os_type: str) -> str | None:
    """Why the password breaks the rules (never echoing it), or None when it is acceptable."""
    if not 8 <= len(password) <= 26:
        return "The password must be 8 to 26 characters long."
    allowed = SPECIALS | set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
    if any(ch not in allowed for ch in password):
        return "The password may contain only letters, digits and the special characters !@$%^-_=+[{}]:,./?~#*."
    classes = sum(
        (
            any(ch.isupper() for ch in password),
            any(ch.islower() for ch in password),
            any(ch.isdigit() for ch in password),
            any(ch in SPECIALS for ch in password),
        )
    )
    if classes < 3:
        return (
            "The password must contain at least three of: upper-case letters, lower-case letters, digits, "
            "special characters."
        )
    if os_type == "Windows":
        user = USERS["Windows"].lower()
        lowered = password.lower()
        if user in lowered or user[::-1] in lowered:
            return "A Windows password must not contain the user name Administrator or its reverse."
        if any(user[i : i + 3] in lowered for i in range(len(user) - 2)):
            return "A Windows password must not contain more than two consecutive characters of Administrator."
    return None
