"""A command's ``approval:``: who must agree before a run of it starts, how many of them, for how long.

The approvers are gateway groups, named here and looked up in the database when
someone approves: a group that does not exist (yet) is a readiness warning
(``gateway.approvals``), not a refused file.  ``notify`` names notifications; it
is checked as a list of names here (the catalogue's ``notifications:`` section
checks that each one exists).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The identity room's group names (identity.groups.GROUP_NAME), repeated: the catalogue may not import it.
GROUP_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,99}$"
# The catalogue's slugs (model.NAME_PATTERN), repeated: the model imports this module.
SLUG_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
MAX_EXPIRES_MINUTES = 7 * 24 * 60


class Approval(BaseModel):
    """``approval: {approvers, min_approvals, expires_minutes, notify}`` on a command."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    approvers: Annotated[list[Annotated[str, Field(pattern=GROUP_PATTERN)]], Field(min_length=1, max_length=50)]
    min_approvals: Annotated[int, Field(ge=1, le=20)] = 1
    expires_minutes: Annotated[int, Field(ge=1, le=MAX_EXPIRES_MINUTES)] = 60
    notify: list[Annotated[str, Field(pattern=SLUG_PATTERN)]] = Field(default_factory=list)

    @field_validator("approvers", "notify")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"{repeated[0]!r} is listed twice")
        return value
