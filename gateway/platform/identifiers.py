"""The one identifier check: what a run id and a name may look like, wherever they come from.

Run ids and names (commands, groups, users) arrive in URLs, query strings and
forms, and go straight into database lookups.  PostgreSQL refuses a NUL in a
text parameter (a 500 with a traceback, where SQLite just finds nothing), and
an unbounded value costs work for nothing.  So an id or a name that could never
exist is "not found" before any lookup: in a URL the converters below refuse it
at routing (404, the same answer as an unknown id), and lookups by a value from
a query string or a form ask ``is_run_id`` / ``is_name`` first.
"""

from __future__ import annotations

import re

from flask import Flask
from werkzeug.routing import BaseConverter

# The ids runs.start mints: str(uuid.uuid4()).
RUN_ID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# A name of any kind: 1-100 characters, no control character (C0, DEL, C1) and no "/".
# The strictest name columns (commands, groups) hold 100; new usernames are at most 64.
NAME_MAX_LENGTH = 100
NAME_PATTERN = rf"[^\x00-\x1f\x7f-\x9f/]{{1,{NAME_MAX_LENGTH}}}"

_RUN_ID = re.compile(RUN_ID_PATTERN)
_NAME = re.compile(NAME_PATTERN)


def is_run_id(value: object) -> bool:
    """Whether ``value`` has the shape of a run id (anything else is no run, without asking the database)."""
    return isinstance(value, str) and _RUN_ID.fullmatch(value) is not None


def is_name(value: object) -> bool:
    """Whether ``value`` could name a command, group or user (anything else names nothing)."""
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


class RunIdConverter(BaseConverter):
    """``<run_id:run_id>``: a URL whose id could never exist does not match the route (404)."""

    regex = RUN_ID_PATTERN


class NameConverter(BaseConverter):
    """``<name:name>``: a URL whose name could never exist does not match the route (404)."""

    regex = NAME_PATTERN
    part_isolating = True  # the pattern excludes "/" (werkzeug would guess otherwise from the "/" in it)


def init_app(app: Flask) -> None:
    """Register the converters; before any blueprint, since rules resolve converters when added."""
    app.url_map.converters["run_id"] = RunIdConverter
    app.url_map.converters["name"] = NameConverter
