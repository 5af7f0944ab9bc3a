"""Username normalisation: NFKC then casefold, so ``Admin``, ``ADMIN`` and the fullwidth spelling are one account."""

from __future__ import annotations

import re
import unicodedata

# New accounts are restricted to a plain alphabet so no two names can look alike.
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


def normalise_username(raw: str) -> str:
    return unicodedata.normalize("NFKC", raw).casefold().strip()


def username_problem(normalised: str) -> str | None:
    """Why a name cannot be used for a new account, or None."""
    if not USERNAME_PATTERN.match(normalised):
        return "use 1-64 of a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
    return None
