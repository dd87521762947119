"""Huawei's admin password rules and the generator (bot/domain/passwords.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.passwords import SPECIALS, generate_password, password_problems


@pytest.mark.parametrize(
    "password",
    ["Pa55w0rd!x", "abcDEF123", "abc-def-12", "ABC_DEF_12", "Ab1!Ab1!", "x" * 23 + "A1!", "Canary-Pw-1234!"],
)
def test_good_passwords(password: str) -> None:
    assert password_problems(password) == []


def test_specials_constant_is_the_documented_set() -> None:
    assert SPECIALS == "!@$%^-_=+[{}]:,./?~#*"
    for ch in SPECIALS:
        assert password_problems(f"Abcdefg{ch}") == [], ch


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("Ab1!", "8 to 26 characters"),
        ("Ab1!" * 7, "8 to 26 characters"),
        ("abcdefgh1", "at least three of"),
        ("ABCDEFGH!", "at least three of"),
        ("Abc def 12", "not allowed"),
        ("Abcdef12&", "not allowed"),
        ("Abcdéf12!", "not allowed"),
    ],
)
def test_bad_passwords_say_why(password: str, fragment: str) -> None:
    problems = password_problems(password)
    assert problems, password
    assert any(fragment in p for p in problems), problems
    for problem in problems:
        assert password not in problem  # the password is never quoted back


def test_too_short_reports_length() -> None:
    assert "it has 4" in password_problems("Ab1!")[0]


def test_space_is_named() -> None:
    assert any("spaces" in p for p in password_problems("Abc def 12"))


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("xxAdministrator1!", "user name 'Administrator'."),
        ("xxadministrator1!", "user name 'Administrator'."),
        ("Rotartsinimda1!", "spelled backwards"),
        ("Xyz-Adm-2024", "more than two consecutive"),
        ("Xyz-STR-2024", "more than two consecutive"),
        ("Xyz-tor-2024", "more than two consecutive"),
    ],
)
def test_windows_username_rules(password: str, fragment: str) -> None:
    problems = password_problems(password, os_type="Windows")
    assert any(fragment in p for p in problems), problems
    # The same password is fine on Linux (the user-name rules are Windows-only unless a user is named).
    assert password_problems(password) == []


def test_windows_two_consecutive_characters_are_allowed() -> None:
    assert password_problems("Xyz-Ad-mi-2024", os_type="windows") == []


def test_explicit_username_applies_on_any_os() -> None:
    assert password_problems("Xroot-2024a", username="root")
    assert password_problems("Xtoor-2024a", username="root")
    assert password_problems("Xroo-2024a", username="root")
    assert password_problems("Xro-2024a", username="root") == []


@pytest.mark.parametrize("os_type", ["Linux", "Windows"])
def test_generator_is_strong_and_random(os_type: str) -> None:
    passwords = {generate_password(os_type) for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) >= 16
        assert password_problems(password, os_type=os_type) == []


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["Linux", "Windows", "windows", "Other"]))
def test_property_generated_passwords_always_pass(os_type: str) -> None:
    assert password_problems(generate_password(os_type), os_type=os_type) == []


@settings(max_examples=400, deadline=None)
@given(st.text(), st.sampled_from(["Linux", "Windows", ""]), st.one_of(st.none(), st.text(max_size=20)))
def test_property_password_problems_never_raises(password: str, os_type: str, username: str | None) -> None:
    problems = password_problems(password, os_type=os_type, username=username)
    assert isinstance(problems, list)
    assert all(isinstance(p, str) and p.endswith((".", SPECIALS)) for p in problems)
