"""The OpenAPI document: valid OpenAPI 3, covers every route, and the live app keeps to it (schemathesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings

from tests.test_api_runs import api_app, bearer, catalogue_path, issue_token, people, start  # noqa: F401


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
            path = rule.rule.replace("<", "{").replace(">", "}")
            served |= {(path, method) for method in rule.methods - {"HEAD", "OPTIONS"}}
    assert served == documented


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
    start(api_app.test_client(), admin, "echo", {"args": ["seed"]}, wait=20)  # something in runs and audit
    local = {"REMOTE_ADDR": "127.0.0.1"}
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", api_app, headers=admin, environ_base=local)
    checks = [
        not_a_server_error, status_code_conformance, content_type_conformance,
        response_headers_conformance, response_schema_conformance,
    ]  # fmt: skip
    tested: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.endswith("/stream") or operation.path.startswith("/shell2http/"):
            continue  # SSE bodies and the compatibility layer are covered by their own tests

        @settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case):
            if isinstance(case.query, dict) and "wait" in case.query:
                case.query["wait"] = 0  # keep the run short: a long-poll on a live run would just wait
            if isinstance(case.body, dict) and "wait" in case.body:
                case.body["wait"] = 0
            case.call_and_validate(headers=admin, checks=checks, environ_base=local)

        check()
        tested.append(f"{operation.method.upper()} {operation.path}")
    assert len(tested) == 8, tested  # every operation but the stream (and the schema itself, which schemathesis skips)
