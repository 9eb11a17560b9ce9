"""Password hashing (argon2id at OWASP's minimum) and the rules a new password must meet."""

from __future__ import annotations

import re

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kith.errors import ValidationFailed

# OWASP minimum for argon2id: 19 MiB, t=2, p=1 (~45 ms here; the library default is ~250 ms).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)

MIN_LENGTH = 10
MAX_LENGTH = 256

# The commonest leaked-password shapes; a real breached list would be a data download we
# cannot make here, so refuse the obvious patterns instead.
_COMMON_WORDS = tuple(
    """password passwort qwerty azerty qwertyuiop asdfghjkl zxcvbnm 1q2w3e4r letmein welcome
    iloveyou admin monkey dragon football baseball sunshine princess abc123 trustno1 master
    shadow superman changeme secret 123456 111111 000000 kith""".split()
)


def check_new_password(password: str, *, username: str = "", email: str = "") -> None:
    """Raise ValidationFailed(field="password") if the password is too weak to accept."""
    if len(password) < MIN_LENGTH:
        raise ValidationFailed(f"Use at least {MIN_LENGTH} characters.", field="password")
    if len(password) > MAX_LENGTH:
        raise ValidationFailed(f"Use at most {MAX_LENGTH} characters.", field="password")
    lowered = password.lower()
    stripped = re.sub(r"[\d\W_]+$", "", re.sub(r"^[\d\W_]+", "", lowered))
    if len(set(lowered)) < 4:
        raise ValidationFailed("This password is too repetitive.", field="password")
    if any(
        stripped == w or stripped.startswith(w) and len(stripped) - len(w) < 3
        for w in _COMMON_WORDS
    ):
        raise ValidationFailed("This password is too common.", field="password")
    if lowered.isdigit() or re.fullmatch(r"(0123456789|1234567890|abcdefghij)+\w{0,3}", lowered):
        raise ValidationFailed("This password is too common.", field="password")
    for own in (username.lower(), email.lower().split("@")[0]):
        if own and len(own) >= 3 and own in lowered:
            raise ValidationFailed("Don't use your name in your password.", field="password")


def hash_password(password: str) -> str:
    """An argon2id hash of the password."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Does the password match the hash? (Never raises on a bad hash.)"""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the stored hash uses older parameters than today's."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


# A hash to verify against when the account does not exist, so a login for an unknown name
# takes as long as one for a known name.
DUMMY_HASH = _hasher.hash("kith-timing-equalizer")
