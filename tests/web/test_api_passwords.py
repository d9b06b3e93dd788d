"""Password rules (length, variety, the account's own names, common passwords) and hashing."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from web.accounts import AccountError, check_password
from web.passwords import weakness


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("password123", "most common"),
        ("Password2024!", "common password with"),
        ("P@ssw0rd!!", "common password with"),
        ("!!iloveyou99", "common password with"),
        ("qwertyuiop", "most common"),
        ("abcdefghijklm", "sequence"),
        ("9876543210123", None),  # not in order all the way: allowed by this rule
        ("abcabcabcabc", "repeats"),
        ("dragondragon", "repeats"),
        ("correct horse battery staple", None),
        ("Tr0ub4dor&3-xyz", None),
    ],
)
def test_weakness(password: str, why: str | None) -> None:
    found = weakness(password)
    assert (found is None) if why is None else (found is not None and why in found)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short", "must be 10 to 1024 characters"),
        ("x" * 1025, "must be 10 to 1024 characters"),
        ("aaaaabbbbbb", "too few different characters"),
        ("I am Alice_99 ok", "must not contain the username"),
        ("hello wonderland", "must not contain your email address"),
        ("sunshine2025", "common password"),
    ],
)
def test_check_password_messages(password: str, message: str) -> None:
    with pytest.raises(AccountError) as info:
        check_password(password, username="alice_99", email="wonderland@example.com")
    assert info.value.field == "password" and message in info.value.message


def test_production_hasher_is_argon2id_with_library_defaults() -> None:
    # The API tests swap in a cheap hasher (tests/web/conftest.py); the real one is checked in a
    # fresh interpreter (reloading web.accounts here would leave other modules holding stale
    # classes: an AccountError they cannot catch).
    import subprocess
    import sys

    probe = (
        "from web import accounts as a\n"
        "h = a.hash_password('correct horse battery staple')\n"
        "assert a.verify_password(h, 'correct horse battery staple')\n"
        "assert not a.verify_password(h, 'wrong')\n"
        "assert not a.verify_password('not a hash', 'x')\n"
        "print(h)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    defaults = PasswordHasher()
    assert out.startswith(
        f"$argon2id$v=19$m={defaults.memory_cost},t={defaults.time_cost},p={defaults.parallelism}$"
    )
