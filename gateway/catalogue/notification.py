"""A notification of the catalogue: where a run's outcome is sent (webhook, email, Slack) and on which outcomes.

The file names environment variables (``url_env``, ``secret_env``), never a
URL or a secret: a Slack or webhook URL is itself a credential, and the
catalogue is reviewed and committed like code.  Which fields a kind takes is
checked when the file is loaded, naming the notification and the field;
whether the variables are set is the loader's business (an unset one makes
the notification unconfigured, readiness ``warn``, not a crash).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The commands' slug (model.NAME_PATTERN), repeated: the model imports this module for its file shape.
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,62}$"
ENV_NAME_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
# What ``on:`` may name: a run's terminal states, and ``changed`` (DESIGN.md, "Outbound delivery").
OUTCOMES = ("succeeded", "failed", "timed_out", "cancelled", "lost")
CHANGED = "changed"
# An address as a mail header carries it: no display name, no comma, no angle bracket, no white space
# or control character (what would let one entry become several recipients or a second header).
_ADDRESS = re.compile(r"[^\s@<>,;:\"()\[\]\\\x00-\x1f\x7f]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")

NotifyList = list[Annotated[str, Field(pattern=NAME_PATTERN)]]


def check_names(value: list[str]) -> list[str]:
    """A ``notify:`` list: each name once (whether it exists is the loader's check)."""
    seen: set[str] = set()
    for name in value:
        if name in seen:
            raise ValueError(f"{name!r} is given twice")
        seen.add(name)
    return value


class Notification(BaseModel):
    """One ``notifications:`` entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    kind: Literal["webhook", "email", "slack"]
    on: list[str]
    url_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = None
    secret_env: Annotated[str, Field(pattern=ENV_NAME_PATTERN)] | None = None
    to: list[str] | None = None
    # Seconds one attempt may take (connect, TLS, send, answer); then it is a failure and retried.
    timeout: Annotated[float, Field(gt=0, le=60)] = 10

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, data: Any) -> Any:
        """YAML 1.1 (PyYAML) reads a bare ``on:`` key as the boolean true: take it back as ``on``."""
        if isinstance(data, dict) and any(key is True for key in data):
            if "on" in data:
                raise ValueError("'on' is given twice")
            data = {("on" if key is True else key): value for key, value in data.items()}
        return data

    @field_validator("on")
    @classmethod
    def _on(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"name at least one of {', '.join((*OUTCOMES, CHANGED))}")
        for outcome in value:
            if outcome not in (*OUTCOMES, CHANGED):
                raise ValueError(f"unknown outcome {outcome!r} (one of {', '.join((*OUTCOMES, CHANGED))})")
        return check_names(value)

    @field_validator("to")
    @classmethod
    def _to(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("name at least one address")
        for address in value:
            if not _ADDRESS.fullmatch(address):
                raise ValueError(f"not a plain mail address: {address!r}")
        return check_names(value)

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> Notification:
        if self.kind == "email":
            if self.to is None:
                raise ValueError("to: required for an email notification (a list of addresses)")
            if self.url_env is not None or self.secret_env is not None:
                raise ValueError("url_env, secret_env: not for email notifications (SMTP_URL says where mail goes)")
            return self
        if self.to is not None:
            raise ValueError(f"to: only for email notifications, not {self.kind}")
        if self.url_env is None:
            raise ValueError(f"url_env: required for a {self.kind} notification (the variable holding its URL)")
        if self.kind == "webhook" and self.secret_env is None:
            raise ValueError(
                "secret_env: required for a webhook notification (the variable holding its signing secret)"
            )
        if self.kind == "slack" and self.secret_env is not None:
            raise ValueError("secret_env: only for webhook notifications (a Slack URL is its own secret)")
        return self

    def wants(self, outcome: str) -> bool:
        """Whether this outcome alone is reason to notify (``changed`` needs the previous run: see runs.notices)."""
        return outcome in self.on

    @property
    def on_change(self) -> bool:
        return CHANGED in self.on
