"""The test suite's shared URL builders (tests/route_builders.py) are the functions werkzeug compiles itself."""

from __future__ import annotations

import dis

from flask import Flask, url_for

from tests import route_builders


def instructions(function: object) -> list[tuple[str, object]]:
    return [(op.opname, op.argval) for op in dis.get_instructions(function)]  # type: ignore[arg-type]


def test_every_routes_builder_is_the_one_werkzeug_compiles_for_it(app: Flask) -> None:
    rules = list(app.url_map.iter_rules())
    assert len(rules) > 40
    for rule in rules:
        for append_unknown, bound in ((False, rule._build), (True, rule._build_unknown)):
            fresh = route_builders.fresh_builder(rule, append_unknown)
            assert bound.__self__ is rule
            assert bound.__func__.__name__ == fresh.__name__
            assert instructions(bound.__func__) == instructions(fresh), rule.rule


def test_urls_built_through_shared_builders_name_each_apps_own_values(make_app) -> None:
    first, second = make_app(), make_app()
    with first.test_request_context("/"):
        built_first = url_for("web.run_page", run_id="0b6f2a57-3f0f-4d43-9d4b-6a5b4d1f7a10", q="a b")
    with second.test_request_context("/"):
        built_second = url_for("web.run_page", run_id="11111111-2222-4333-8444-555555555555")
    assert built_first == "/runs/0b6f2a57-3f0f-4d43-9d4b-6a5b4d1f7a10?q=a+b"
    assert built_second == "/runs/11111111-2222-4333-8444-555555555555"
