"""Every parameter type through every input source: one refusal, whichever way a hostile value arrives.

OliveTin's worst advisories came from one type or one input source skipping
validation.  Each type of DESIGN.md has a command in this file's catalogue;
each hostile value (leading ``-``, NUL, line breaks, over-long, the wrong JSON
type, look-alikes such as fullwidth digits, U+2212 MINUS, Cyrillic letters in
a choice, RIGHT-TO-LEFT OVERRIDE) goes through every surface that can carry
that type, and every surface must refuse it the same way:

- status 400, naming the same field(s): the JSON API's ``error.details``,
  Shell2HTTP's ``{"error": "... field: message"}``, the web form's marked field
  (a list's "line N" is item N-1) or its error above the form;
- exactly one new ledger row, ``run.rejected``, naming those fields;
- nothing executed: no run row, no ``run.started``, and no marker file (every
  command writes its argv to ``MARKS/<run id>``, so a run that slipped through
  leaves one).

Surfaces: ``web`` (POST /commands/<name>, urlencoded with the CSRF token),
``multipart`` (the same form as multipart/form-data, the way a form with a file
input posts), ``api`` (POST /api/v1/commands/<name>/runs), ``s2h`` (POST
/shell2http/<name>, JSON) and ``s2h-multipart`` (``request_json`` + files).
What a surface cannot carry: Shell2HTTP carries only a ``list`` param named
``args`` and ``file`` params (as ``@name`` uploads), so a command with a scalar
param is not offered there (404) and those types are tested on the other
three; JSON carries no file; a form carries only text, so "the wrong JSON type"
exists only for JSON (a file part where text is expected is its counterpart),
and a line break inside a list item cannot be sent by a form (a line is an item).

The body itself (invalid JSON, a duplicate key, a non-finite number, an
unknown top-level key, more than MAX_CONTENT_LENGTH) is checked before it is
read as a run request: 400 naming the key (413 for size) and nothing runs, but
it is no run request, so no ``run.rejected`` row.

The last test checks that no input source lets a caller choose anything of the
spawned command's environment: that command prints its real ``os.environ``.
"""

from __future__ import annotations

import html
import io
import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from gateway.db.models import AuditEvent, Run
from gateway.identity import accounts, groups, tokens
from gateway.platform.extensions import db
from gateway.runners.shell import SAFE_PATH
from tests.conftest import csrf_token_from, seed_session

pytestmark = pytest.mark.both_engines  # the attack suite: every param type through every input source, per engine

MARK_SCRIPT = 'printf "%s\\n" "$@" > "$MARKS/$GATEWAY_RUN_ID"'
ENV_SCRIPT = "import json, os; print(json.dumps(dict(os.environ)))"
SCALARS = ("string", "integer", "number", "boolean", "choice", "date")
ABSENT = object()  # this surface cannot carry the value


@dataclass(frozen=True)
class Upload:
    """A file part in a multipart body (where a form field or JSON would carry text)."""

    content: bytes = b"data\n"
    filename: str = "notes.txt"

    def part(self) -> tuple[io.BytesIO, str]:
        return io.BytesIO(self.content), self.filename


def catalogue(marks: Path) -> dict[str, Any]:
    """One command per type; each writes its argv to MARKS/<run id>, so any run leaves a trace."""

    def marking(name: str, params: dict[str, Any], *placeholders: str) -> dict[str, Any]:
        argv = ["sh", "-c", MARK_SCRIPT, "sh", *placeholders]
        return {
            "name": name,
            "title": name,
            "kind": "shell",
            "argv": argv,
            "env": {"MARKS": str(marks)},
            "params": params,
        }

    def scalar(kind: str, **spec: Any) -> dict[str, Any]:
        return marking(f"t-{kind}", {"value": {"type": kind, **spec}}, "{value}")

    text = {"type": "string"}
    return {
        "commands": [
            scalar("string", required=True),
            scalar("integer", required=True),
            scalar("number", required=True),
            scalar("boolean", default=False),
            scalar("choice", required=True, choices=["alpha", "beta", "12"]),
            scalar("date", required=True),
            marking("t-list", {"args": {"type": "list"}}, "{args}"),
            marking(
                "t-file", {"upload": {"type": "file", "required": True}, "args": {"type": "list"}}, "{upload}", "{args}"
            ),
            {
                "name": "t-env",
                "title": "Prints its environment",
                "kind": "shell",
                "argv": [sys.executable, "-c", ENV_SCRIPT, "{args}"],
                "env": {"DECLARED": "{note}"},
                # Params named like the variables a caller would love to set: declared, never exported.
                "params": {
                    "args": {"type": "list"},
                    "note": text,
                    "LD_PRELOAD": text,
                    "PATH": text,
                    "GATEWAY_USER": text,
                    "GATEWAY_RUN_ID": text,
                },
            },
        ]
    }


# --- one app, every surface ------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A surface's answer, normalised: status, the fields it names, the run it started (if any)."""

    surface: str
    status: int
    fields: frozenset[str]
    run_id: str | None
    text: str


@dataclass(frozen=True)
class Mark:
    seq: int
    runs: int


_FIELD_NOTE = re.compile(r'id="param-([^"]+)-note">\s*<p class="field-error" role="alert">(.*?)</p>', re.S)
_TOP_ERROR = re.compile(r'<p class="error" role="alert">([^<:]+): ')
_S2H_FIELD = re.compile(r"(?:^|\. |; )([A-Za-z_]\w*(?:\[\d+\])?): ")


def _form_fields(page: str) -> frozenset[str]:
    """Fields a re-rendered form marks as wrong (a list's "line N" is item N-1) plus those listed above it."""
    named = set()
    for name, note in _FIELD_NOTE.findall(page):
        lines = re.findall(r"line (\d+):", note)
        if lines:
            named.update(f"{name}[{int(n) - 1}]" for n in lines)
        else:
            named.add(name)
    named.update(html.unescape(key) for key in _TOP_ERROR.findall(page))
    return frozenset(named)


def recorded_fields(detail: Mapping[str, Any] | None) -> frozenset[str]:
    """The field names a ``run.rejected`` row records (a mapping of errors, or a bounded list of names)."""
    fields = (detail or {}).get("fields") or {}
    return frozenset(str(name) for name in fields)


@dataclass
class Gateway:
    app: Any
    web_client: Any
    client: Any
    bearer: dict[str, str]
    csrf: str
    marks: Path
    seen_runs: set[str] = field(default_factory=set)

    # surfaces

    def web(self, command: str, pairs: Iterable[tuple[str, Any]], multipart: bool = False) -> Answer:
        data = MultiDict([("csrf_token", self.csrf)])
        for name, value in pairs:
            data.add(name, value.part() if isinstance(value, Upload) else value)
        kind = "multipart/form-data" if multipart else "application/x-www-form-urlencoded"
        response = self.web_client.post(f"/commands/{command}", data=data, content_type=kind)
        page = response.get_data(as_text=True)
        run_id = None
        if response.status_code == 303:
            run_id = response.headers["Location"].split("/runs/")[1].split("?")[0]
        fields = _form_fields(page) if response.status_code == 400 else frozenset()
        return Answer("multipart" if multipart else "web", response.status_code, fields, run_id, page)

    def api(self, command: str, params: Any, extra: Mapping[str, Any] | None = None) -> Answer:
        body = json.dumps({"params": params, **(extra or {})})
        response = self.client.post(
            f"/api/v1/commands/{command}/runs", data=body, content_type="application/json", headers=self.bearer
        )
        payload = response.get_json()
        fields = frozenset(payload["error"].get("details") or {}) if response.status_code >= 400 else frozenset()
        run_id = payload.get("id") if response.status_code < 300 else None
        return Answer("api", response.status_code, fields, run_id, response.get_data(as_text=True))

    def s2h(
        self,
        command: str,
        body: Mapping[str, Any],
        files: Mapping[str, Upload] | None = None,
        form: Mapping[str, str] | None = None,
    ) -> Answer:
        """JSON, or multipart (request_json + ``files`` + ``form`` fields) when either is given."""
        request_json = {"force_unique_key": True, **body}  # the key is then the run id
        if files is None and form is None:
            response = self.client.post(f"/shell2http/{command}", json=request_json, headers=self.bearer)
            surface = "s2h"
        else:
            data: dict[str, Any] = {"request_json": json.dumps(request_json), **(form or {})}
            data.update({name: upload.part() for name, upload in (files or {}).items()})
            response = self.client.post(
                f"/shell2http/{command}", data=data, content_type="multipart/form-data", headers=self.bearer
            )
            surface = "s2h-multipart"
        payload = response.get_json()
        error = payload.get("error") if isinstance(payload, dict) else None
        fields = frozenset(_S2H_FIELD.findall(error)) if isinstance(error, str) else frozenset()
        run_id = payload.get("key") if response.status_code == 202 else None
        return Answer(surface, response.status_code, fields, run_id, response.get_data(as_text=True))

    def post_json_text(self, path: str, body: bytes) -> Answer:
        """A JSON body exactly as written (a duplicate key, NaN: what json.dumps never writes)."""
        response = self.client.post(path, data=body, content_type="application/json", headers=self.bearer)
        error = response.get_json()["error"]
        fields = frozenset(error.get("details") or {}) if isinstance(error, dict) else frozenset()
        return Answer(path.split("/")[1], response.status_code, fields, None, response.get_data(as_text=True))

    # the ledger, the runs table and the marker files

    def mark(self) -> Mark:
        with self.app.app_context():
            seq = db.session.scalar(select(func.max(AuditEvent.seq))) or 0
            runs = db.session.scalar(select(func.count()).select_from(Run)) or 0
            db.session.remove()
        return Mark(seq, runs)

    def events_since(self, mark: Mark) -> list[AuditEvent]:
        with self.app.app_context():
            rows = list(
                db.session.scalars(select(AuditEvent).where(AuditEvent.seq > mark.seq).order_by(AuditEvent.seq))
            )
            db.session.expunge_all()
            db.session.remove()
        return rows

    def refused(self, answer: Answer, command: str, fields: Iterable[str], before: Mark, label: str = "") -> None:
        """The one refusal: 400 naming ``fields``, one run.rejected naming them, no run, nothing spawned."""
        expected = frozenset(fields)
        where = f"{command} via {answer.surface} ({label})"
        assert answer.status == 400, (where, answer.status, answer.text[:500])
        assert answer.fields == expected, (where, answer.fields, expected)
        events = self.events_since(before)
        assert [event.event for event in events] == ["run.rejected"], (where, [event.event for event in events])
        assert events[0].command == command and events[0].outcome == "invalid_params", where
        assert recorded_fields(events[0].detail) == expected, (where, events[0].detail)
        after = self.mark()
        assert after.runs == before.runs, (where, "a run row was written")

    def refused_before_reading(self, answer: Answer, fields: Iterable[str], before: Mark, status: int = 400) -> None:
        """A body refused as a body: the status, the key named (if any), no run.

        A run request whose body cannot be read as one is still on record: one run.rejected
        (``invalid_request``). Only a body over MAX_CONTENT_LENGTH (413) is cut off by the
        server before any of it is read, and leaves no row.
        """
        assert answer.status == status, (answer.surface, answer.status, answer.text[:300])
        for name in fields:  # named in the error's details, or at least in its message
            assert name in answer.fields or name in answer.text, (answer.surface, name, answer.text[:300])
        recorded = [(e.event, e.outcome) for e in self.events_since(before) if e.event.startswith("run.")]
        expected = (
            [] if status == 413 or answer.surface in ("web", "multipart") else [("run.rejected", "invalid_request")]
        )
        assert recorded == expected, (answer.surface, recorded)
        assert self.mark().runs == before.runs

    def nothing_ran(self) -> None:
        """No marker file but those of the runs this test meant to start."""
        assert sorted(path.name for path in self.marks.iterdir()) == sorted(self.seen_runs)

    def argv_of(self, answer: Answer) -> list[str]:
        """Wait for the run ``answer`` started; the argv its command received (one line per element)."""
        assert answer.status in (200, 202, 303) and answer.run_id, (answer.surface, answer.status, answer.text[:500])
        run = self.client.get(f"/api/v1/runs/{answer.run_id}?wait=20", headers=self.bearer).get_json()
        assert run["status"] == "succeeded", run
        self.seen_runs.add(answer.run_id)
        return (self.marks / answer.run_id).read_text().splitlines()

    def output_of(self, answer: Answer) -> dict[str, Any]:
        assert answer.status in (200, 202, 303) and answer.run_id, (answer.surface, answer.status, answer.text[:500])
        run = self.client.get(f"/api/v1/runs/{answer.run_id}?wait=20", headers=self.bearer).get_json()
        assert run["status"] == "succeeded", run
        return dict(run, environ=json.loads(run["output"]))


@pytest.fixture
def gw(make_app, tmp_path: Path) -> Gateway:
    marks = tmp_path / "marks"
    marks.mkdir()
    path = tmp_path / "commands.yaml"
    path.write_text(json.dumps(catalogue(marks)))  # JSON is YAML
    # Refusals are what this file sends; a per-user refusal limit must not answer 429 in their place.
    app = make_app(
        GATEWAY_COMMANDS_FILE=path,
        MAX_CONTENT_LENGTH=64 * 1024,
        RUN_REFUSAL_RATE_LIMIT="100000/minute",
        AUDIT_FLOOD_PER_MINUTE=100000,  # every refusal's own run.rejected row is what this test compares
    )
    with app.app_context():
        user = accounts.create_user("staff", "staff-password-123")
        user_id = user.id
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        for command in catalogue(marks)["commands"]:
            groups.add_grant("ops", command["name"])
        secret = tokens.create_token(user, name="matrix").secret
    web = app.test_client()
    seed_session(app, web, user_id)
    csrf = csrf_token_from(web.get("/commands/t-string").get_data(as_text=True))
    return Gateway(app, web, app.test_client(), {"Authorization": f"Bearer {secret}"}, csrf, marks)


# --- the hostile values, per type ----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A hostile value as the form sends it (text, or an Upload) and as JSON sends it; ABSENT where it cannot go."""

    label: str
    form: Any = ABSENT
    json: Any = ABSENT
    fields: frozenset[str] = frozenset({"value"})


def both(label: str, value: str, fields: Iterable[str] = ("value",)) -> Case:
    return Case(label, value, value, frozenset(fields))


def json_only(label: str, value: Any, fields: Iterable[str] = ("value",)) -> Case:
    return Case(label, json=value, fields=frozenset(fields))


def form_only(label: str, value: Any, fields: Iterable[str] = ("value",)) -> Case:
    return Case(label, form=value, fields=frozenset(fields))


def mangled(honest: str, dash: Any = ABSENT) -> list[Case]:
    """What every type refuses, made from one of its honest values: an option, control characters, too long."""
    return [
        Case("leading dash", "-" + honest, ("-" + honest) if dash is ABSENT else dash),
        both("NUL", honest + "\x00"),
        both("NUL inside", honest[:1] + "\x00" + honest[1:]),
        both("trailing newline", honest + "\n"),
        both("leading CR", "\r" + honest),
        both("CRLF", honest + "\r\n"),
        both("line separator", honest + "\u2028"),
        both("escape", "\x1b[31m" + honest),
        both("over-long", honest * 1000),
        form_only("a file where text goes", Upload()),
    ]


HOSTILE: dict[str, list[Case]] = {
    "string": [
        *mangled("hello"),
        both("leading dashes", "--output=/etc/passwd"),
        json_only("number", 12),
        json_only("list", ["a"]),
        json_only("object", {"a": 1}),
        json_only("boolean", True),
    ],
    "integer": [
        *mangled("12", dash=-12),
        Case("past 64 bits", str(2**63), 2**63),
        Case("below 64 bits", str(-(2**63) - 1), -(2**63) - 1),
        Case("30 digits", "9" * 30, int("9" * 30)),
        json_only("a string", "12"),
        json_only("a float", 12.0),
        json_only("a boolean", True),
        json_only("a list", [12]),
        both("fullwidth digits", "\uff11\uff12"),
        both("U+2212 minus", "\u22125"),
        both("Arabic-Indic digit", "\u0665"),
        both("RTL override", "\u202e12"),
        both("underscores", "1_000"),
        both("hex", "0x10"),
    ],
    "number": [
        *mangled("1.5", dash=-1.5),
        Case("past any double", "1" * 400, int("1" * 400)),
        form_only("not a number", "nan"),
        form_only("infinity", "inf"),
        form_only("overflow", "1e999"),
        json_only("a string", "1.5"),
        json_only("a boolean", True),
        json_only("a list", [1.5]),
        both("fullwidth digits", "\uff11.\uff15"),
        both("U+2212 minus", "\u22121.5"),
        both("decimal comma", "1,5"),
    ],
    "boolean": [
        *mangled("true"),
        both("not a yes or no", "maybe"),
        json_only("a string", "true"),
        json_only("a number", 1),
        json_only("a list", [True]),
        both("fullwidth", "\uff54\uff52\uff55\uff45"),
        both("Cyrillic look-alike", "\u0442rue"),
        both("RTL override", "yes\u202e"),
    ],
    "choice": [
        *mangled("alpha"),
        json_only("the number of a string choice", 12),
        json_only("a list", ["alpha"]),
        json_only("a boolean", True),
        both("Cyrillic a", "\u0430lpha"),
        both("fullwidth digits", "\uff11\uff12"),
        both("other case", "ALPHA"),
        both("RTL override", "\u202ealpha"),
        both("trailing space", "alpha "),
    ],
    "date": [
        *mangled("2024-01-01"),
        json_only("a number", 20240101),
        json_only("a list", ["2024-01-01"]),
        both("fullwidth digits", "\uff12\uff10\uff12\uff14-01-01"),
        both("U+2212 minus", "2024\u221201\u221201"),
        both("RTL override", "\u202e2024-01-01"),
        both("not a real day", "2024-02-30"),
    ],
}
LOOK_ALIKES = "\u2212rf \uff11\uff12 \u0430lpha \u202eexe.txt"  # MINUS, fullwidth 12, Cyrillic a, RTL OVERRIDE
# Values every surface must carry unchanged, as one argv element each (look-alikes are text to a string).
ACCEPTED: dict[str, list[tuple[Any, Any, str]]] = {  # (form text, JSON value, argv element)
    "string": [(LOOK_ALIKES, LOOK_ALIKES, LOOK_ALIKES)],
    "integer": [(" 12 ", 12, "12"), (str(2**63 - 1), 2**63 - 1, str(2**63 - 1))],
    # a long integer is the same integer from a form as from JSON, not a float from one of them
    "number": [("2.5", 2.5, "2.5"), ("1" * 30, int("1" * 30), "1" * 30)],
    "boolean": [("true", True, "true"), ("off", False, "false")],
    "choice": [("alpha", "alpha", "alpha"), ("12", "12", "12")],
    "date": [("2024-02-29", "2024-02-29", "2024-02-29")],
}


def senders(gw: Gateway, command: str, name: str, case: Case, shell2http: bool = False) -> list[Callable[[], Answer]]:
    """One request per surface that can carry ``case``: the form (urlencoded and multipart), JSON, Shell2HTTP."""
    sends = []
    if case.form is not ABSENT:
        if not isinstance(case.form, Upload):  # a file part needs multipart
            sends.append(partial(gw.web, command, [(name, case.form)]))
        sends.append(partial(gw.web, command, [(name, case.form)], multipart=True))
    if case.json is not ABSENT:
        sends.append(partial(gw.api, command, {name: case.json}))
        if shell2http:  # its JSON body, and the same body as request_json of a multipart request
            sends += [partial(gw.s2h, command, {name: case.json}), partial(gw.s2h, command, {name: case.json}, form={})]
    assert sends, case
    return sends


def test_every_scalar_type_is_refused_alike_by_the_form_multipart_and_the_api(gw: Gateway) -> None:
    """One app for the six scalar types (an app per type would cost more than their requests)."""
    for kind in SCALARS:
        command = f"t-{kind}"
        for case in HOSTILE[kind]:
            for send in senders(gw, command, "value", case):
                before = gw.mark()
                gw.refused(send(), command, case.fields, before, case.label)
        # Shell2HTTP carries only `args` (and files): a scalar command is not offered there at all.
        before = gw.mark()
        assert gw.s2h(command, {"args": ["x"]}).status == 404 and not gw.events_since(before)
    gw.nothing_ran()
    # The surfaces do carry each type: honest values (look-alikes included, for text) run, unchanged.
    for kind in SCALARS:
        for form_text, json_value, element in ACCEPTED[kind]:
            for answer in (
                gw.web(f"t-{kind}", [("value", form_text)]),
                gw.web(f"t-{kind}", [("value", form_text)], multipart=True),
                gw.api(f"t-{kind}", {"value": json_value}),
            ):
                assert gw.argv_of(answer) == [element], (kind, answer.surface)
    gw.nothing_ran()  # no marker but those of the honest runs


LIST_HOSTILE = [
    Case("leading dash", "ok\n-rf", ["ok", "-rf"], frozenset({"args[1]"})),
    Case("NUL", "a\x00b", ["a\x00b"], frozenset({"args[0]"})),
    json_only("newline in an item", ["a\nb"], ["args[0]"]),
    json_only("CR in an item", ["ok", "a\rb"], ["args[1]"]),
    Case("escape", "\x1b]0;title\x07", ["\x1b]0;title\x07"], frozenset({"args[0]"})),
    Case("over-long item", "x" * 4097, ["x" * 4097], frozenset({"args[0]"})),
    Case("too many items", "\n".join(["a"] * 101), ["a"] * 101, frozenset({"args"})),
    json_only("a string", "a", ["args"]),
    json_only("an object", {"a": "b"}, ["args"]),
    json_only("null in a list", ["a", None], ["args[1]"]),
    json_only("a number item", ["a", 5], ["args[1]"]),
    form_only("a file where text goes", Upload(), ["args"]),
]


def test_a_list_is_refused_alike_by_every_surface(gw: Gateway) -> None:
    for case in LIST_HOSTILE:
        for send in senders(gw, "t-list", "args", case, shell2http=True):
            before = gw.mark()
            gw.refused(send(), "t-list", case.fields, before, case.label)
    # A file part where Shell2HTTP's list goes is refused the same way, by name.
    before = gw.mark()
    gw.refused(gw.s2h("t-list", {"args": ["@args"]}, files={"args": Upload()}), "t-list", ["args"], before)
    gw.nothing_ran()
    honest = ["\u2212rf", "\uff11\uff12", "\u202eexe.txt", "\u0430lpha", "LD_PRELOAD=/x.so", "@nofile"]
    for answer in (
        gw.web("t-list", [("args", "\n".join(honest))]),
        gw.web("t-list", [("args", "\r\n".join(honest))], multipart=True),
        gw.api("t-list", {"args": honest}),
        gw.s2h("t-list", {"args": honest}),
        gw.s2h("t-list", {"args": honest}, form={}),
    ):
        assert gw.argv_of(answer) == honest, answer.surface
    gw.nothing_ran()


def test_a_file_is_refused_alike_by_every_surface(gw: Gateway) -> None:
    refusals = [
        # JSON carries no file: a path, or something shaped like a stored file, is the wrong type.
        (gw.api, ("t-file", {"upload": "/etc/passwd"}), ["upload"]),
        (gw.api, ("t-file", {"upload": {"path": "/etc/passwd", "sha256": "0" * 64}}), ["upload"]),
        (gw.api, ("t-file", {}), ["upload"]),
        # A form's text field is not a file either.
        (gw.web, ("t-file", [("upload", "/etc/passwd")]), ["upload"]),
        (gw.web, ("t-file", [("upload", "/etc/passwd")], True), ["upload"]),
        (gw.web, ("t-file", [], True), ["upload"]),
        # A file part under a name that is no file parameter: a list, or no parameter at all.
        (gw.web, ("t-file", [("upload", Upload()), ("args", Upload())], True), ["args"]),
        (gw.web, ("t-file", [("upload", Upload()), ("LD_PRELOAD", Upload())], True), ["LD_PRELOAD"]),
        # Shell2HTTP: JSON alone carries no file, "@upload" with no upload is just text.
        (gw.s2h, ("t-file", {"args": ["@upload"]}), ["upload"]),
        (gw.s2h, ("t-file", {"args": ["@upload"]}, {}), ["upload"]),
        # ...an upload nobody references, one under a list's name, one under no parameter's name.
        (gw.s2h, ("t-file", {"args": []}, {"upload": Upload()}), ["upload"]),
        (gw.s2h, ("t-file", {"args": ["@upload", "@args"]}, {"upload": Upload(), "args": Upload()}), ["args"]),
        (
            gw.s2h,
            ("t-file", {"args": ["@upload", "@LD_PRELOAD"]}, {"upload": Upload(), "LD_PRELOAD": Upload()}),
            ["LD_PRELOAD"],
        ),
        # ...and the list beside a good upload is still checked.
        (gw.s2h, ("t-file", {"args": ["@upload", "-rf"]}, {"upload": Upload()}), ["args[0]"]),
        (gw.web, ("t-file", [("upload", Upload()), ("args", "-rf")], True), ["args[0]"]),
    ]
    for send, arguments, fields in refusals:
        before = gw.mark()
        gw.refused(send(*arguments), "t-file", fields, before, repr(arguments)[:80])
    # Larger than MAX_CONTENT_LENGTH: the body is refused before it is read, on both file surfaces.
    big = Upload(b"x" * (65 * 1024))
    for answer in (
        gw.web("t-file", [("upload", big)], multipart=True),
        gw.s2h("t-file", {"args": ["@upload"]}, {"upload": big}),
    ):
        gw.refused_before_reading(answer, [], gw.mark(), 413)
    gw.nothing_ran()
    # Hostile file names are only recorded: the command gets the stored file's path, never the name.
    for name in ("-rf", "--help", "\u202etxt.sh", "../../etc/passwd", "a\x00b.txt", "x" * 300):
        upload = Upload(b"content\n", name)
        for answer in (
            gw.web("t-file", [("upload", upload), ("args", "x")], multipart=True),
            gw.s2h("t-file", {"args": ["@upload", "x"]}, {"upload": upload}),
        ):
            path, *rest = gw.argv_of(answer)
            assert path.startswith("/") and name.strip("./") not in path and rest == ["x"], (name, path)
    gw.nothing_ran()


# --- the body and the environment --------------------------------------------------------------


def test_a_name_given_twice_is_refused_by_every_surface(gw: Gateway) -> None:
    # A form is a multi-dict: the repeated field is refused by name (a parameter-level refusal, recorded).
    for multipart in (False, True):
        before = gw.mark()
        gw.refused(gw.web("t-string", [("value", "a"), ("value", "b")], multipart), "t-string", ["value"], before)
    # A JSON object with a key twice is no valid body: refused, naming the key, before it is read.
    for path, body, named in [
        ("/api/v1/commands/t-string/runs", b'{"params": {"value": "a", "value": "b"}}', "value"),
        ("/shell2http/t-list", b'{"args": ["a"], "args": ["b"]}', "args"),
        # NaN is no JSON number either: the body is refused, naming where it was.
        ("/api/v1/commands/t-number/runs", b'{"params": {"value": NaN}}', "params.value"),
    ]:
        before = gw.mark()
        gw.refused_before_reading(gw.post_json_text(path, body), [named], before)
    gw.nothing_ran()


def test_no_input_source_sets_the_commands_environment(gw: Gateway) -> None:
    forged = {"LD_PRELOAD": "/tmp/evil.so", "PATH": "/tmp", "GATEWAY_USER": "admin", "GATEWAY_RUN_ID": "forged"}
    args = ["LD_PRELOAD=/tmp/evil.so", "PATH=/tmp", "GATEWAY_USER=admin", "BASH_ENV=/tmp/x"]
    runs = [
        gw.api("t-env", {**forged, "args": args, "note": "declared"}),
        gw.web("t-env", [*forged.items(), ("args", "\n".join(args)), ("note", "declared")]),
        gw.web("t-env", [*forged.items(), ("args", "\n".join(args)), ("note", "declared")], multipart=True),
        gw.s2h("t-env", {"args": args, "callback_context": {"env": forged, **forged}}),
        gw.s2h("t-env", {"args": args}, files={}),
    ]
    for answer in runs:
        run = gw.output_of(answer)
        environ = run["environ"]
        declared = "declared" if answer.surface in ("api", "web", "multipart") else ""
        assert environ == {
            "PATH": SAFE_PATH,
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "DECLARED": declared,
            "GATEWAY_USER": "staff",
            "GATEWAY_RUN_ID": answer.run_id,
        }, (answer.surface, environ)
    # Names the catalogue did not declare are refused by name, whichever way they come.
    for send, fields in [
        (lambda: gw.api("t-env", {"LD_LIBRARY_PATH": "/tmp", "args": []}), ["LD_LIBRARY_PATH"]),
        (lambda: gw.web("t-env", [("LD_LIBRARY_PATH", "/tmp"), ("note", "x")]), ["LD_LIBRARY_PATH"]),
        (lambda: gw.web("t-env", [("LD_AUDIT", "/tmp/a.so")], multipart=True), ["LD_AUDIT"]),
        (lambda: gw.web("t-env", [("LD_AUDIT", Upload())], multipart=True), ["LD_AUDIT"]),
        (lambda: gw.s2h("t-env", {"args": ["@LD_AUDIT"]}, {"LD_AUDIT": Upload()}), ["LD_AUDIT"]),
        (lambda: gw.s2h("t-env", {"args": ["@LD_PRELOAD"]}, {"LD_PRELOAD": Upload()}), ["LD_PRELOAD"]),
    ]:
        before = gw.mark()
        gw.refused(send(), "t-env", fields, before)
    # Keys beside the parameters are no way in either: the body is refused before it is read.
    for send, fields in [
        (lambda: gw.api("t-env", {}, {"env": {"LD_PRELOAD": "/tmp/evil.so"}}), ["env"]),
        (lambda: gw.api("t-env", {}, {"LD_PRELOAD": "/tmp/evil.so"}), ["LD_PRELOAD"]),
        (lambda: gw.s2h("t-env", {"args": [], "env": {"LD_PRELOAD": "/tmp/evil.so"}}), ["env"]),
        (lambda: gw.s2h("t-env", {"args": []}, form={"LD_PRELOAD": "/tmp/evil.so"}), ["LD_PRELOAD"]),
    ]:
        before = gw.mark()
        gw.refused_before_reading(send(), fields, before)
    assert not any(path.name for path in gw.marks.iterdir())  # t-env writes no marker; nothing else ran
