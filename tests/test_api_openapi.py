"""The OpenAPI document: valid OpenAPI 3, covers every route, and the live app keeps to it (schemathesis)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.identity import groups
from tests.test_api_runs import GRANTED, api_app, bearer, catalogue_path, issue_token, people, start  # noqa: F401

pytestmark = pytest.mark.both_engines  # hostile input generated from the OpenAPI document, against each engine


def test_the_document_is_valid_openapi_and_covers_every_route(api_app, bearer):  # noqa: F811
    from openapi_spec_validator import validate

    response = api_app.test_client().get("/api/v1/openapi.json", headers=bearer("staff"))
    assert response.status_code == 200 and response.mimetype == "application/json"
    document = response.get_json()
    validate(document)
    documented = {
        (path, method.upper()) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    served = set()
    for rule in api_app.url_map.iter_rules():
        if rule.rule.startswith(("/api/", "/shell2http/")):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)  # <run_id:run_id> -> {run_id}
            served |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == documented


# --- schemathesis against the live app ------------------------------------------------------

MAX_EXAMPLES = 25  # per operation, valid requests (mostly with real values)
MAX_NEGATIVE_EXAMPLES = 10  # per operation, invalid requests (to real objects): 4xx, never 5xx, on schema
ADMIN_ONLY = ("admins-only",)
# Valid params per command of tests/test_api_runs.py's catalogue: the fuzzer would almost never guess them.
VALID_PARAMS = {
    "echo": [{"args": ["Hello", "World!"]}, {"args": []}, {}],
    "chatty": [{"n": 1}, {}],
    "nap": [{"seconds": 0.05}],
    "secretive": [{"token": "s3cret-value", "level": "high"}, {}],
    "admins-only": [{}],
    "fenced": [{}],  # allowed_networks 10.0.0.0/8: not visible from 127.0.0.1, even to an admin
    "limited": [{}],  # rate_limit 1/minute: the second start is a 429 with Retry-After
}


@dataclass
class Seeds:
    """Values that make generated requests reach real objects: run ids, keys, cursors, audit facts."""

    finished: list[str]
    running: str
    others_run: str
    keys: list[str]
    doomed_keys: list[str]
    runs_cursor: str
    audit_cursor: str
    audit_head: int
    since: str
    outcomes: list[str]
    to_approve: str
    to_deny: str
    own_request: str


def seed(client, admin: dict[str, str], staff: dict[str, str]) -> Seeds:
    requests = [start(client, who, "guarded").get_json()["id"] for who in (staff, staff, admin)]  # approvers: leads
    finished = [start(client, admin, "echo", {"args": [word]}, wait=20).get_json()["id"] for word in ("a", "b", "c")]
    finished.append(start(client, admin, "secretive", {"token": "x"}, wait=20).get_json()["id"])
    others_run = start(client, staff, "echo", {"args": ["staff"]}, wait=20).get_json()["id"]
    running = start(client, admin, "nap", {"seconds": 60}).get_json()["id"]
    keys = [
        client.post("/shell2http/echo", json={"args": [word], "force_unique_key": True}, headers=admin).get_json()[
            "key"
        ]
        for word in ("x", "y", "z")
    ]
    runs_page = client.get("/api/v1/runs?limit=1", headers=admin).get_json()
    audit_page = client.get("/api/v1/audit?limit=1", headers=admin).get_json()
    events = client.get("/api/v1/audit?limit=500", headers=admin).get_json()["items"]
    head = client.get("/api/v1/audit/verify", headers=admin).get_json()["head"]["seq"]
    return Seeds(
        finished=finished,
        running=running,
        others_run=others_run,
        keys=keys[:2],
        doomed_keys=keys[2:],
        runs_cursor=runs_page["next_cursor"],
        audit_cursor=audit_page["next_cursor"],
        audit_head=head,
        since=events[-1]["at"],
        outcomes=sorted({event["outcome"] for event in events if event.get("outcome")}),
        to_approve=requests[0],
        to_deny=requests[1],
        own_request=requests[2],
    )


def realistic_values(seeds: Seeds) -> dict[str, dict[str, st.SearchStrategy]]:
    """Per operation: strategies for each part of the request that a real client would send."""
    names = st.sampled_from([*GRANTED, *ADMIN_ONLY])
    run_ids = st.sampled_from([*seeds.finished, seeds.others_run, seeds.running])
    keys = st.sampled_from(seeds.keys)
    statuses = st.sampled_from(["queued", "running", "succeeded", "failed", "timed_out", "cancelled", "lost"])
    run_bodies = st.one_of(
        *(
            st.fixed_dictionaries({"params": st.sampled_from(options), "wait": st.sampled_from([0, 5])}).map(
                lambda body, name=name: (name, body)
            )
            for name, options in VALID_PARAMS.items()
        )
    )
    return {
        "GET /api/v1/commands/{name}": {"path": st.fixed_dictionaries({"name": names})},
        "GET /api/v1/commands/{name}/choices/{param}": {
            "path": st.fixed_dictionaries({"name": names, "param": st.sampled_from(["level", "token", "args", "n"])})
        },
        "POST /api/v1/commands/{name}/runs": {"path": st.fixed_dictionaries({"name": names}), "name+body": run_bodies},
        "GET /api/v1/runs": {
            "query": st.fixed_dictionaries(
                {},
                optional={
                    "command": names,
                    "status": statuses,
                    "limit": st.integers(1, 3),
                    "cursor": st.just(seeds.runs_cursor),
                },
            )
        },
        "GET /api/v1/runs/{run_id}": {
            "path": st.fixed_dictionaries({"run_id": run_ids}),
            "query": st.fixed_dictionaries({}, optional={"wait": st.sampled_from([0, 0.01])}),
        },
        "GET /api/v1/runs/{run_id}/stream": {  # only finished runs: a live run's stream would stay open
            "path": st.fixed_dictionaries({"run_id": st.sampled_from(seeds.finished)})
        },
        "POST /api/v1/runs/{run_id}/cancel": {"path": st.fixed_dictionaries({"run_id": run_ids})},
        # Each decision is fuzzed on requests its own explicit cases decided or may not touch.
        **{
            f"POST /api/v1/runs/{{run_id}}/{action}": {
                "path": st.fixed_dictionaries({"run_id": st.sampled_from([mine, seeds.own_request, seeds.finished[0]])})
            }
            for action, mine in (("approve", seeds.to_approve), ("deny", seeds.to_deny), ("withdraw", seeds.to_approve))
        },
        "GET /api/v1/approvals": {
            "query": st.fixed_dictionaries(
                {}, optional={"scope": st.sampled_from(["waiting", "requested"]), "limit": st.integers(1, 3)}
            )
        },
        "GET /api/v1/audit": {
            "query": st.fixed_dictionaries(
                {},
                optional={
                    "since": st.just(seeds.since),
                    "until": st.just("2999-01-01T00:00:00Z"),
                    "actor": st.sampled_from(["admin", "staff"]),
                    "event": st.sampled_from(["run.started", "run.finished", "token.created"]),
                    "command": names,
                    "outcome": st.sampled_from(seeds.outcomes),
                    "source_ip": st.just("127.0.0.1"),
                    "limit": st.integers(1, 5),
                    "cursor": st.just(seeds.audit_cursor),
                },
            )
        },
        "GET /api/v1/audit/verify": {
            "query": st.fixed_dictionaries({}, optional={"from_seq": st.integers(1, seeds.audit_head)})
        },
        "POST /shell2http/{name}": {
            "path": st.just({"name": "echo"}),
            "body": st.fixed_dictionaries(
                {"args": st.lists(st.sampled_from(["Hello", "World!"]), max_size=2)},
                optional={
                    "force_unique_key": st.booleans(),
                    "timeout": st.sampled_from([1, 5]),
                    "callback_context": st.just({"ticket": 42}),
                },
            ),
        },
        "GET /shell2http/{name}": {
            "path": st.just({"name": "echo"}),
            "query": st.fixed_dictionaries({"key": keys}, optional={"wait": st.sampled_from(["true", "false"])}),
        },
        "DELETE /shell2http/{name}": {
            "path": st.just({"name": "echo"}),
            "query": st.fixed_dictionaries({"key": st.sampled_from(seeds.doomed_keys)}),
        },
    }


def explicit_cases(seeds: Seeds) -> dict[str, list[tuple[dict, int]]]:
    """Per operation: requests a real client sends, with the status each must get (the success paths)."""
    echo, json_body = {"name": "echo"}, {"media_type": "application/json"}
    return {
        "GET /api/v1/commands": [({}, 200)],
        "GET /api/v1/commands/{name}": [({"path_parameters": {"name": "secretive"}}, 200)],
        "GET /api/v1/commands/{name}/choices/{param}": [
            ({"path_parameters": {"name": "secretive", "param": "level"}}, 200),
            ({"path_parameters": {"name": "secretive", "param": "token"}}, 404),  # no choice parameter
        ],
        "POST /api/v1/commands/{name}/runs": [
            ({"path_parameters": echo, "body": {"params": {"args": ["Hi"]}, "wait": 10}, **json_body}, 200),
            ({"path_parameters": {"name": "nap"}, "body": {"params": {"seconds": 0.05}}, **json_body}, 202),
            ({"path_parameters": {"name": "limited"}, "body": {}, **json_body}, 202),
            ({"path_parameters": {"name": "limited"}, "body": {}, **json_body}, 429),
        ],
        "GET /api/v1/runs": [({"query": {"command": "echo", "limit": 2, "cursor": seeds.runs_cursor}}, 200)],
        "GET /api/v1/runs/{run_id}": [
            ({"path_parameters": {"run_id": seeds.finished[-1]}}, 200),  # with a masked secret param
            ({"path_parameters": {"run_id": seeds.others_run}, "query": {"wait": 0}}, 200),
        ],
        "GET /api/v1/runs/{run_id}/stream": [  # a finished run is replayed, then the stream ends
            ({"path_parameters": {"run_id": seeds.finished[0]}}, 200),
            ({"path_parameters": {"run_id": seeds.finished[0]}, "headers": {"Last-Event-ID": "1"}}, 200),
        ],
        "POST /api/v1/runs/{run_id}/cancel": [
            ({"path_parameters": {"run_id": seeds.running}}, 202),
            ({"path_parameters": {"run_id": seeds.finished[0]}}, 409),
            ({"path_parameters": {"run_id": seeds.to_approve}}, 409),  # waiting for approval: withdraw it
        ],
        # The admin approves (group leads) staff's requests, and withdraws their own; then each is decided.
        "POST /api/v1/runs/{run_id}/approve": [
            ({"path_parameters": {"run_id": seeds.own_request}, "body": {}, **json_body}, 403),
            ({"path_parameters": {"run_id": seeds.to_approve}, "body": {"comment": "ok"}, **json_body}, 200),
            ({"path_parameters": {"run_id": seeds.to_approve}, "body": {"comment": "again"}, **json_body}, 409),
        ],
        "POST /api/v1/runs/{run_id}/deny": [
            ({"path_parameters": {"run_id": seeds.to_deny}, "body": {"comment": "no"}, **json_body}, 200),
            ({"path_parameters": {"run_id": seeds.to_deny}, "body": {}, **json_body}, 409),
        ],
        "POST /api/v1/runs/{run_id}/withdraw": [
            ({"path_parameters": {"run_id": seeds.to_approve}, "body": {}, **json_body}, 403),  # not theirs
            ({"path_parameters": {"run_id": seeds.own_request}, "body": {"comment": "never mind"}, **json_body}, 200),
        ],
        "GET /api/v1/approvals": [({}, 200), ({"query": {"scope": "requested", "limit": 2}}, 200)],
        "GET /api/v1/audit": [
            ({"query": {"event": "run.finished", "limit": 2, "cursor": seeds.audit_cursor}}, 200),
            ({"query": {"actor": "admin", "since": seeds.since, "source_ip": "127.0.0.1"}}, 200),
        ],
        "GET /api/v1/audit/verify": [({"query": {"from_seq": 2}}, 200)],
        "GET /api/v1/schedules": [({}, 200)],
        "GET /api/v1/schedules/{name}/runs": [
            ({"path_parameters": {"name": "echo-hourly"}, "query": {"limit": 2, "cursor": seeds.since}}, 200),
        ],
        "POST /shell2http/{name}": [
            ({"path_parameters": echo, "body": {"args": ["Hi"], "callback_context": {"t": 1}}, **json_body}, 202),
        ],
        "GET /shell2http/{name}": [({"path_parameters": echo, "query": {"key": seeds.keys[0], "wait": "true"}}, 200)],
        "DELETE /shell2http/{name}": [({"path_parameters": echo, "query": {"key": seeds.doomed_keys[0]}}, 204)],
    }


def make_realistic(case, label: str, values: dict[str, st.SearchStrategy], data: st.DataObject) -> None:
    """Most of the time (not always: fuzzed values still run) replace a generated part by a real one."""
    for part, strategy in values.items():
        if data.draw(st.integers(0, 3), label=f"keep generated {part}") == 0:
            continue
        drawn = data.draw(strategy, label=part)
        if part == "path":
            case.path_parameters = drawn
        elif part == "query":
            case.query = drawn
        elif part == "body":
            case.body = drawn
        else:  # name+body: the body must fit the command
            case.path_parameters, case.body = {"name": drawn[0]}, drawn[1]
    if label == "GET /api/v1/runs/{run_id}" and isinstance(case.query, dict) and "wait" in case.query:
        case.query["wait"] = shorter(case.query.get("wait"), 0.01)  # a long-poll on the live run would just wait
    if label == "POST /api/v1/commands/{name}/runs" and isinstance(case.body, dict) and "wait" in case.body:
        case.body["wait"] = shorter(case.body.get("wait"), 5)


def shorter(wait, limit: float):
    """A wait that parses as a number is capped (the request stays valid); anything else is left to be refused."""
    if isinstance(wait, bool):
        return wait
    try:
        seconds = float(wait)
    except (TypeError, ValueError):
        return wait
    return min(seconds, limit) if seconds == seconds else wait


def fuzz(operation, label: str, values: dict[str, st.SearchStrategy], call, *, negative: bool = False) -> None:
    """Generated requests for one operation, mostly made realistic, each sent and checked by ``call``.

    Negative requests break the schema somewhere; only their path is made real, so they reach real objects.
    """
    from schemathesis import GenerationMode

    mode = GenerationMode.NEGATIVE if negative else GenerationMode.POSITIVE
    if negative:
        values = {part: strategy for part, strategy in values.items() if part == "path"}

    @settings(
        max_examples=MAX_NEGATIVE_EXAMPLES if negative else MAX_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    def check(case, data):
        make_realistic(case, label, values, data)
        call(case)

    check()


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_response_off_schema(api_app, people):  # noqa: F811
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    admin = {"Authorization": f"Bearer {issue_token(api_app, 'admin')[1]}"}
    staff = {"Authorization": f"Bearer {issue_token(api_app, 'staff')[1]}"}
    with api_app.app_context():
        groups.create_group("leads")
        groups.add_member("leads", "admin")
        groups.add_grant("ops", "guarded")
    seeds = seed(api_app.test_client(), admin, staff)
    values = realistic_values(seeds)
    local = {"REMOTE_ADDR": "127.0.0.1"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api_app, headers=admin, environ_base=local)
    checks = [
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_headers_conformance, response_schema_conformance,
    ]  # fmt: skip

    def call(case):
        return case.call_and_validate(headers=admin, checks=checks, environ_base=local)

    explicit = explicit_cases(seeds)
    fuzzed = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        for request, status in explicit.pop(label):
            response = call(operation.Case(**request))
            assert response.status_code == status, (label, request, response.status_code, response.text)
        fuzz(operation, label, values.get(label, {}), call)
        fuzz(operation, label, values.get(label, {}), call, negative=True)
        fuzzed.add(label)
    assert not explicit and len(fuzzed) == 19, (explicit, fuzzed)  # every operation but the schema itself
