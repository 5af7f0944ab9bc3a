"""Username normalisation: NFKC then casefold, so ``Admin``, ``ADMIN`` and the fullwidth spelling are one account."""

from __future__ import annotations

import re
import unicodedata

from gateway.platform.phrases import N_, Phrase

# New accounts are restricted to a plain alphabet so no two names can look alike.
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Every column that stores a normalised name (users, login_throttles, audit actor) holds this many characters.
MAX_USERNAME_LENGTH = 150


def normalise_username(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw).casefold().strip()


def username_problem(normalised: str) -> Phrase | None:
    """Why a name cannot be used for a new account, or None."""
    if not USERNAME_PATTERN.match(normalised):
        return N_("use 1-64 of a-z, 0-9, '.', '_' or '-', starting with a letter or digit")
    return None


def login_name(raw: str) -> str:
    """The normalised name a sign-in attempt is looked up, throttled, rate-limited and audited under.

    NFKC and casefold can expand one typed character into many (U+FDFA becomes
    18), so the result is clamped to the width of the name columns.  Clamping
    cannot reach a real account: account names are at most 64 characters.
    """
    return normalise_username(raw)[:MAX_USERNAME_LENGTH]


def login_name_problem(raw: str) -> str | None:
    """Why a typed sign-in name cannot even be looked up, or None (PostgreSQL text cannot hold NUL)."""
    if any(unicodedata.category(ch) == "Cc" for ch in normalise_username(raw)):
        return "contains control characters"
    return None
