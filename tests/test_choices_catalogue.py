"""Parameters from data as the catalogue loads them: every misuse of choices_from, multiple and depends_on is
refused naming the command and the field; argv expands a multiple choice item by item, each item checked.

(The lists themselves, read from a running gateway, are tests/test_choices.py.)
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.catalogue.argv import build_argv
from gateway.catalogue.params import ParamError
from gateway.catalogue.values import validate_params
from tests.test_catalogue import parse, query, rejection, shell

SOURCE = query("hosts", sql="SELECT name FROM hosts WHERE cluster = :cluster", cache_seconds=30,
               params={"cluster": {"type": "string", "required": True}})  # fmt: skip
CLUSTERS = query("clusters", sql="SELECT name FROM clusters", cache_seconds=30)


def picker(**param: Any) -> dict[str, Any]:
    """A shell command with a cluster (from data) and a host parameter shaped by ``param``."""
    host = {"type": "choice", "choices_from": {"command": "hosts", "column": "name"}, "depends_on": "cluster"}
    host.update(param)
    cluster = {"type": "choice", "choices_from": {"command": "clusters", "column": "name"}}
    return shell("pick", argv=["echo", "{cluster}", "{host}"], params={"cluster": cluster, "host": host})


def test_a_well_formed_dependent_pair_loads() -> None:
    catalogue = parse(CLUSTERS, SOURCE, picker(multiple=True, min_items=1, max_items=3))
    command = catalogue.get("pick")
    assert command.lists_from_data == ("cluster", "host")
    assert command.params["host"].expands and command.params["host"].choices is None


@pytest.mark.parametrize(
    ("commands", "field", "message"),
    [
        ([CLUSTERS, SOURCE, picker(depends_on=None, choices_from={"command": "nope", "column": "name"})],
         "params.host.choices_from.command", "unknown command 'nope'"),
        ([CLUSTERS, SOURCE, shell("other"), picker(depends_on=None, choices_from={"command": "other", "column": "x"})],
         "params.host.choices_from.command", "'other' is a shell command; choices come from a query command"),
        ([CLUSTERS, {**{k: v for k, v in SOURCE.items() if k != "cache_seconds"}, "approval": {"approvers": ["leads"]}},
          picker()],
         "params.host.choices_from.command",
         "source 'hosts' needs approval; a list nobody may wait for cannot come from it"),
        ([CLUSTERS, {**SOURCE, "cache_seconds": 9}, picker()],
         "params.host.choices_from.command", "source 'hosts' must declare cache_seconds of at least 10"),
        ([CLUSTERS, SOURCE, picker(depends_on=None)],
         "params.host.choices_from.command",
         "source 'hosts' parameter 'cluster' is neither filled by depends_on nor has a default"),
        ([CLUSTERS, SOURCE, picker(depends_on="nope")],
         "params.host.depends_on", "'nope' is not another parameter of this command"),
        ([CLUSTERS, SOURCE, picker(depends_on="host")],
         "params.host.depends_on", "'host' is not another parameter of this command"),
        ([CLUSTERS, {**SOURCE, "params": {"zone": {"type": "string", "default": "a"}},
                     "sql": "SELECT name FROM hosts WHERE zone = :zone"}, picker()],
         "params.host.depends_on", "source 'hosts' takes no parameter 'cluster'"),
    ],
)  # fmt: skip
def test_a_source_that_cannot_fill_the_list_is_refused(
    commands: list[dict[str, Any]], field: str, message: str
) -> None:
    assert rejection(*commands) == f"<string>: command 'pick' field {field}: {message}"


def test_depends_on_a_secret_is_refused_at_load() -> None:
    source = {**SOURCE, "params": {"token": {"type": "string", "required": True}},
              "sql": "SELECT name FROM hosts WHERE owner = :token"}  # fmt: skip
    command = shell(
        "pick", argv=["echo", "{host}"], env={"TOKEN": "{token}"},
        params={
            "token": {"type": "string", "secret": True},
            "host": {"type": "choice", "choices_from": {"command": "hosts", "column": "name"}, "depends_on": "token"},
        },
    )  # fmt: skip
    assert rejection(source, command) == (
        "<string>: command 'pick' field params.host.depends_on: "
        "'token' is a secret parameter (its value would key a shared list)"
    )


def test_dependencies_that_go_round_in_a_circle_are_refused() -> None:
    looping = query("loop", cache_seconds=30, sql="SELECT a FROM t WHERE b = :b",
                    params={"b": {"type": "choice", "choices_from": {"command": "loop", "column": "a"}}})  # fmt: skip
    assert rejection(looping) == "<string>: command 'loop' field params.b.choices_from.command: " + (
        "source 'loop' parameter 'b' is neither filled by depends_on nor has a default"
    )
    first = query("first", cache_seconds=30, sql="SELECT a FROM t",
                  params={"x": {"type": "choice", "default": "a",
                                "choices_from": {"command": "second", "column": "a"}}})  # fmt: skip
    second = query("second", cache_seconds=30, sql="SELECT a FROM t",
                   params={"y": {"type": "choice", "default": "a",
                                 "choices_from": {"command": "first", "column": "a"}}})  # fmt: skip
    assert (
        rejection(first, second)
        == "<string>: command 'first' field params: its choices_from sources lead back to itself"
    )


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ({"type": "string", "choices_from": {"command": "clusters", "column": "name"}}, "'choices_from' only goes with type choice"),
        ({"type": "string", "multiple": True}, "'multiple' only goes with type choice"),
        ({"type": "choice", "choices": ["a"], "min_items": 1}, "'min_items' only goes with 'multiple: true'"),
        ({"type": "choice", "choices": ["a"], "multiple": True, "min_items": 3, "max_items": 2},
         "'min_items' is greater than 'max_items'"),
        ({"type": "choice", "choices": ["a"], "choices_from": {"command": "clusters", "column": "name"}},
         "'choices' and 'choices_from' exclude each other"),
        ({"type": "choice", "choices": ["a"], "depends_on": "x"}, "'depends_on' only goes with 'choices_from' (the list it changes)"),
        ({"type": "choice"}, "a choice parameter needs 'choices' or 'choices_from'"),
        ({"type": "choice", "choices": ["a", "b"], "multiple": True, "default": ["a", "c"]}, "'default[1]' must be one of a, b"),
    ],
)  # fmt: skip
def test_misshapen_parameters_are_refused(param: dict[str, Any], message: str) -> None:
    assert (
        rejection(CLUSTERS, shell("pick", params={"p": param})) == f"<string>: command 'pick' field params.p: {message}"
    )


def test_a_multiple_choice_stands_alone_in_argv_and_never_in_env() -> None:
    many = {"type": "choice", "choices": ["a", "b"], "multiple": True}
    inside = shell("pick", argv=["echo", "--host={p}"], params={"p": many})
    assert "argv[1]: list parameter 'p' must stand alone as an element" in rejection(inside)
    env = shell("pick", env={"P": "{p}"}, params={"p": many})
    assert "env.P: list parameter 'p' can only be used in argv" in rejection(env)


@pytest.mark.parametrize(
    ("sql", "multiple", "message"),
    [
        ("SELECT * FROM t WHERE a = :p", True, "sql: multiple parameter 'p' can only be used as 'IN :p'"),
        ("SELECT * FROM t WHERE a IN (:p)", True, "sql: multiple parameter 'p' can only be used as 'IN :p'"),
        ("SELECT * FROM t WHERE a IN :p OR b = :p", True, "sql: multiple parameter 'p' can only be used as 'IN :p'"),
        ("SELECT * FROM t WHERE a IN :p", False, "sql: 'IN :p' needs a parameter with 'multiple: true'"),
    ],
)
def test_a_multiple_choice_is_bound_only_as_in_name(sql: str, multiple: bool, message: str) -> None:
    param = {"type": "choice", "choices": ["a", "b"], "multiple": multiple, "required": True}
    assert rejection(query(sql=sql, params={"p": param})) == f"<string>: command 'report': {message}"


def test_a_multiple_choice_of_a_query_needs_one_item_at_least() -> None:
    optional = {"type": "choice", "choices": ["a", "b"], "multiple": True}
    assert rejection(query(sql="SELECT * FROM t WHERE a IN :p", params={"p": optional})) == (
        "<string>: command 'report': params.p: a multiple parameter of a query needs 'required: true' or 'min_items'"
    )
    parse(query(sql="SELECT * FROM t WHERE a IN :p", params={"p": {**optional, "min_items": 1}}))


def test_multiple_items_are_validated_one_by_one() -> None:
    command = parse(shell("pick", argv=["echo", "{p}"], params={
        "p": {"type": "choice", "choices": ["a", "b", 3], "multiple": True, "min_items": 1, "max_items": 2},
    })).get("pick")  # fmt: skip
    assert validate_params(command, {"p": ["b", 3]}) == {"p": ["b", 3]}
    assert validate_params(command, {"p": ["3"]}, "form") == {"p": [3]}  # a form's text names the option
    for raw, field, message in [
        (["a", "c"], "p[1]", "must be one of a, b, 3"),
        (["a", "a"], "p[1]", "is chosen twice"),
        (["a", "b", 3], "p", "has more than 2 items"),
        ([], "p", "needs at least 1 item"),
        ("a", "p", "must be a list of choices"),
        (["a", ["b"]], "p[1]", "must be one of a, b, 3"),
    ]:
        with pytest.raises(ParamError) as refused:
            validate_params(command, {"p": raw})
        assert (refused.value.field, refused.value.message) == (field, message), raw


def test_argv_expands_each_item_and_refuses_an_item_with_a_leading_dash() -> None:
    command = parse(shell("pick", argv=["ls", "{p}"], params={
        "p": {"type": "choice", "choices": ["/tmp", "-rf", "/var"], "multiple": True},
    })).get("pick")  # fmt: skip
    assert build_argv(command, validate_params(command, {"p": ["/tmp", "/var"]})) == ["ls", "/tmp", "/var"]
    assert build_argv(command, validate_params(command, {})) == ["ls"]  # nothing chosen: no element
    with pytest.raises(ParamError) as refused:
        build_argv(command, validate_params(command, {"p": ["/tmp", "-rf"]}))
    assert (refused.value.field, refused.value.message) == (
        "p[1]",
        "must not start with '-' (it would be read as an option)",
    )
    after = parse(shell("pick", argv=["ls", "--", "{p}"], params={
        "p": {"type": "choice", "choices": ["/tmp", "-rf"], "multiple": True},
    })).get("pick")  # fmt: skip
    assert build_argv(after, validate_params(after, {"p": ["-rf"]})) == ["ls", "--", "-rf"]
