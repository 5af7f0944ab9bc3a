"""The catalogue loader: the shipped file parses, and every bad definition is refused naming command and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.catalogue import Catalogue, CatalogueError, load_catalogue, parse_catalogue

ROOT = Path(__file__).resolve().parent.parent
OPS_ENV = {"OPS_DB_URL": "sqlite:////tmp/ops.db"}


def shell(name: str = "demo", **fields: Any) -> dict[str, Any]:
    command = {"name": name, "title": name.title(), "kind": "shell", "argv": ["echo", "hi"]}
    command.update(fields)
    return command


def query(name: str = "report", **fields: Any) -> dict[str, Any]:
    command = {"name": name, "title": name.title(), "kind": "query", "datasource": "ops", "sql": "SELECT 1"}
    command.update(fields)
    return command


def catalogue_text(*commands: dict[str, Any], **top: Any) -> str:
    document: dict[str, Any] = {"datasources": {"ops": {"url_env": "OPS_DB_URL"}}, "commands": list(commands)}
    document.update(top)
    return yaml.safe_dump(document, sort_keys=False)


def parse(*commands: dict[str, Any], environ: dict[str, str] | None = None, **top: Any) -> Catalogue:
    return parse_catalogue(catalogue_text(*commands, **top), OPS_ENV if environ is None else environ)


def rejection(*commands: dict[str, Any], **top: Any) -> str:
    with pytest.raises(CatalogueError) as caught:
        parse(*commands, **top)
    return str(caught.value)


# --- the shipped catalogue -------------------------------------------------------------------------


def test_shipped_catalogue_parses_with_its_demo_commands() -> None:
    catalogue = load_catalogue(ROOT / "commands.yaml", OPS_ENV)
    for name in ("uptime", "disk-usage", "process-list", "log-tail", "echo", "slow-count", "task-status", "task-list"):
        assert catalogue.get(name) is not None, name
    assert catalogue.get("task-list").params["status"].choices == ["Success", "Pending", "Failed"]
    assert catalogue.unavailable() == []


def test_missing_catalogue_file_is_a_catalogue_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        load_catalogue(tmp_path / "nope.yaml", {})


def test_invalid_yaml_is_a_catalogue_error() -> None:
    with pytest.raises(CatalogueError, match="not valid YAML"):
        parse_catalogue("commands: [\n", {})


# --- rejections name the command and the field ------------------------------------------------------


def test_unknown_top_level_key() -> None:
    message = rejection(shell(), extras={"x": 1})
    assert "extras" in message and "Extra inputs" in message


def test_unknown_command_key() -> None:
    message = rejection(shell("disk", shel="bash"))
    assert "command 'disk'" in message and "shel" in message


def test_unknown_param_key() -> None:
    message = rejection(shell("disk", argv=["df", "{mount}"], params={"mount": {"type": "string", "requird": True}}))
    assert "command 'disk'" in message and "params.mount.requird" in message


def test_unknown_datasource_key() -> None:
    message = rejection(shell(), datasources={"ops": {"url_env": "OPS_DB_URL", "url": "sqlite://"}})
    assert "datasources" in message and "url" in message


def test_duplicate_command_names() -> None:
    message = rejection(shell("twice"), shell("twice"))
    assert "command 'twice'" in message and "name" in message and "twice" in message.split(":")[-1]


def test_placeholder_without_param() -> None:
    message = rejection(shell("disk", argv=["df", "{mount}"]))
    assert "command 'disk'" in message and "argv[1]" in message and "'mount'" in message


def test_placeholder_in_env_without_param() -> None:
    message = rejection(shell("disk", env={"TARGET": "{where}"}))
    assert "command 'disk'" in message and "env.TARGET" in message and "'where'" in message


def test_secret_param_in_argv() -> None:
    params = {"token": {"type": "string", "secret": True}}
    message = rejection(shell("deploy", argv=["deploy", "--token={token}"], params=params))
    assert "command 'deploy'" in message and "argv[1]" in message and "secret" in message and "'token'" in message


def test_secret_param_through_env_is_fine() -> None:
    params = {"token": {"type": "string", "secret": True}}
    catalogue = parse(shell("deploy", argv=["deploy"], env={"TOKEN": "{token}"}, params=params))
    assert catalogue.get("deploy").secret_params() == {"token"}


def test_cache_seconds_with_a_secret_param_is_refused() -> None:
    """A shared cached result keyed by the params would tell anyone sending the same secret that it is right."""
    params = {"token": {"type": "string", "secret": True}, "level": {"type": "string"}}
    command = shell("lookup", argv=["lookup", "{level}"], env={"TOKEN": "{token}"}, params=params, cache_seconds=30)
    message = rejection(command)
    assert "command 'lookup'" in message and "cache_seconds" in message and "'token'" in message
    assert parse({**command, "cache_seconds": 0}).get("lookup").cache_seconds == 0  # caching off: fine
    assert parse({**command, "params": {"level": {"type": "string"}}, "env": {}}).get("lookup").cache_seconds == 30


def test_list_param_inside_a_larger_element() -> None:
    params = {"args": {"type": "list"}}
    message = rejection(shell("echo", argv=["echo", "--args={args}"], params=params))
    assert "command 'echo'" in message and "argv[1]" in message and "'args'" in message and "alone" in message


def test_placeholder_as_program() -> None:
    message = rejection(shell("anything", argv=["{program}"], params={"program": {}}))
    assert "command 'anything'" in message and "argv[0]" in message


def test_query_without_datasource() -> None:
    command = query("report")
    del command["datasource"]
    message = rejection(command)
    assert "command 'report'" in message and "datasource" in message


def test_query_with_unknown_datasource() -> None:
    message = rejection(query("report", datasource="warehouse"))
    assert "command 'report'" in message and "field datasource" in message and "'warehouse'" in message


def test_shell_command_without_argv() -> None:
    command = shell("bare")
    del command["argv"]
    message = rejection(command)
    assert "command 'bare'" in message and "argv" in message


def test_shell_command_with_empty_argv() -> None:
    assert "argv" in rejection(shell("bare", argv=[]))


def test_sql_bind_without_param() -> None:
    message = rejection(query("report", sql="SELECT * FROM tasks WHERE status = :status"))
    assert "command 'report'" in message and "sql" in message and ":status" in message


def test_sql_cast_is_not_mistaken_for_a_bind() -> None:
    catalogue = parse(query("report", sql="SELECT '5'::integer AS n, 'a:b' AS s"))
    assert catalogue.get("report").params == {}


def test_bad_regex_pattern() -> None:
    params = {"host": {"type": "string", "pattern": "[a-z"}}
    message = rejection(shell("ping", argv=["ping", "{host}"], params=params))
    assert "command 'ping'" in message and "params.host.pattern" in message and "regular expression" in message


def test_bad_rate_limit() -> None:
    message = rejection(shell("busy", rate_limit="lots per hour"))
    assert "command 'busy'" in message and "rate_limit" in message


def test_good_rate_limit() -> None:
    assert parse(shell("busy", rate_limit="5/minute;100/day")).get("busy").rate_limit == "5/minute;100/day"


def test_bad_allowed_networks() -> None:
    message = rejection(shell("net", allowed_networks=["10.0.0.0/33"]))
    assert "command 'net'" in message and "allowed_networks" in message


def test_allowed_networks_parse() -> None:
    command = parse(shell("net", allowed_networks=["10.0.0.0/8", "::1/128"])).get("net")
    assert [str(network) for network in command.networks()] == ["10.0.0.0/8", "::1/128"]


def test_dashboard_with_required_params() -> None:
    params = {"mount": {"type": "string", "required": True}}
    message = rejection(shell("tile", argv=["df", "{mount}"], params=params, dashboard=True))
    assert "command 'tile'" in message and "dashboard" in message


def test_choice_without_choices() -> None:
    params = {"mount": {"type": "choice"}}
    message = rejection(shell("disk", argv=["df", "{mount}"], params=params))
    assert "command 'disk'" in message and "params.mount" in message and "choices" in message


def test_unquoted_yes_no_choices_are_refused() -> None:
    text = catalogue_text(shell("confirm", argv=["echo", "{answer}"])).replace(
        "argv:", "params:\n    answer: {type: choice, choices: [yes, no]}\n  argv:"
    )
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(text, OPS_ENV)
    assert "command 'confirm'" in str(caught.value) and "params.answer.choices" in str(caught.value)


def test_bad_command_name() -> None:
    assert "name" in rejection(shell("Not A Slug"))


def test_required_param_with_default() -> None:
    params = {"n": {"type": "integer", "required": True, "default": 3}}
    message = rejection(shell("count", argv=["seq", "{n}"], params=params))
    assert "command 'count'" in message and "params.n" in message


def test_query_with_shell_fields() -> None:
    message = rejection(query("report", argv=["echo"]))
    assert "command 'report'" in message and "argv" in message


def test_query_with_list_param() -> None:
    message = rejection(query("report", sql="SELECT :ids", params={"ids": {"type": "list"}}))
    assert "command 'report'" in message and "params.ids" in message


# --- defaults must satisfy their own spec -------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"type": "choice", "choices": ["/", "/var"], "default": "/home"}, "one of"),
        ({"type": "integer", "min": 1, "max": 10, "default": 50}, "at most"),
        ({"type": "integer", "min": 1, "default": 0}, "at least"),
        ({"type": "integer", "default": "5"}, "whole number"),
        ({"type": "number", "max": 1.5, "default": 2.5}, "at most"),
        ({"type": "boolean", "default": "yes please"}, "true or false"),
        ({"type": "string", "pattern": "[a-z]+", "default": "ABC"}, "pattern"),
        ({"type": "string", "max_length": 3, "default": "abcd"}, "longer"),
        ({"type": "date", "default": "2024-02-30"}, "date"),
        ({"type": "list", "max_items": 1, "default": ["a", "b"]}, "more than"),
    ],
)
def test_invalid_default_is_refused(spec: dict[str, Any], words: str) -> None:
    message = rejection(shell("demo", argv=["echo", "{value}"], params={"value": spec}))
    assert "command 'demo'" in message and "params.value" in message and "default" in message and words in message


def test_valid_defaults_are_kept() -> None:
    params = {
        "mount": {"type": "choice", "choices": ["/", "/var"], "default": "/var"},
        "lines": {"type": "integer", "min": 1, "max": 100, "default": 10},
        "since": {"type": "date", "default": "2024-01-31"},
    }
    command = parse(shell("demo", argv=["echo", "{mount}", "{lines}", "{since}"], params=params)).get("demo")
    assert [spec.default for spec in command.params.values()] == ["/var", 10, "2024-01-31"]


def test_unquoted_yaml_date_default_becomes_an_iso_string() -> None:
    text = catalogue_text(shell("demo", argv=["echo", "{since}"])).replace(
        "argv:", "params:\n    since: {type: date, default: 2024-01-31}\n  argv:"
    )
    assert parse_catalogue(text, OPS_ENV).get("demo").params["since"].default == "2024-01-31"


# --- data sources and digests ----------------------------------------------------------------------


def test_datasource_without_url_makes_its_commands_unavailable_not_an_error() -> None:
    catalogue = parse(query("report"), shell("uptime"), environ={})
    report = catalogue.get("report")
    assert catalogue.unavailable() == ["report"]
    reason = catalogue.unavailable_reason(report)
    assert reason is not None and "OPS_DB_URL" in reason and "'ops'" in reason
    assert catalogue.unavailable_reason(catalogue.get("uptime")) is None


def test_blank_datasource_url_counts_as_unset() -> None:
    assert parse(query("report"), environ={"OPS_DB_URL": "  "}).unavailable() == ["report"]


def test_datasource_url_comes_from_the_environment() -> None:
    catalogue = parse(query("report"), environ={"OPS_DB_URL": "sqlite:////srv/ops.db"})
    assert catalogue.datasource_urls == {"ops": "sqlite:////srv/ops.db"}
    assert catalogue.unavailable() == []
    assert "sqlite:////srv/ops.db" not in repr(catalogue)


def test_definition_sha256_follows_the_definition() -> None:
    first = parse(shell("demo", argv=["echo", "one"])).get("demo")
    same = parse(shell("demo", argv=["echo", "one"]), shell("other")).get("demo")
    changed = parse(shell("demo", argv=["echo", "two"])).get("demo")
    retimed = parse(shell("demo", argv=["echo", "one"], timeout=5)).get("demo")
    assert first.definition_sha256() == same.definition_sha256()
    assert len({first.definition_sha256(), changed.definition_sha256(), retimed.definition_sha256()}) == 3


def test_catalogue_sha256_is_of_the_file_text() -> None:
    one = parse_catalogue(catalogue_text(shell("a")), {})
    two = parse_catalogue(catalogue_text(shell("b")), {})
    assert one.sha256 != two.sha256 and len(one.sha256) == 64


# --- leading dash opt-in ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "admits"),
    [
        (r"-?[0-9]+", True),
        (r"^-?\d+$", True),
        (r"[-+]?\d+", True),
        (r"(-|\+)?\d+", True),
        (r"[A-Za-z0-9._-]+", False),  # a file-name pattern that happens to include '-'
        (r".*", False),
        (r"\S+", False),
        (r"[0-9]+", False),
        (None, False),
    ],
)
def test_only_a_pattern_written_for_it_admits_a_leading_dash(pattern: str | None, admits: bool) -> None:
    spec: dict[str, Any] = {"type": "string"}
    if pattern is not None:
        spec["pattern"] = pattern
    command = parse(shell("demo", argv=["echo", "{value}"], params={"value": spec})).get("demo")
    assert command.params["value"].admits_leading_dash() is admits


def test_a_data_source_url_can_come_from_a_file(tmp_path):
    """Kubernetes mounts secrets as files: ``<url_env>_FILE`` names one, like SECRET_KEY_FILE."""
    from gateway.catalogue import parse_catalogue

    text = (
        "datasources:\n  ops: {url_env: OPS_DB_URL}\n"
        "commands:\n  - {name: q, title: Q, kind: query, datasource: ops, sql: 'SELECT 1'}\n"
    )
    secret = tmp_path / "ops-url"
    secret.write_text("sqlite:////srv/ops.db\n")
    catalogue = parse_catalogue(text, {"OPS_DB_URL_FILE": str(secret)})
    assert catalogue.datasource_urls == {"ops": "sqlite:////srv/ops.db"} and catalogue.unavailable() == []
    missing = parse_catalogue(text, {"OPS_DB_URL_FILE": str(tmp_path / "absent")})
    assert missing.unavailable() == ["q"]


def test_the_fast_parser_reads_exactly_what_safe_load_reads() -> None:
    from gateway.catalogue.loader import _load_yaml

    text = (ROOT / "commands.yaml").read_text(encoding="utf-8")
    text += "\nextra:\n  - {yes: on, no: off, n: 0x1F, f: 1.5e3, d: 2024-05-01, t: ~, s: 'it''s', b: \"\\u00e9\"}\n"
    assert _load_yaml(text) == yaml.safe_load(text)


@pytest.mark.parametrize("text", ["a: [b", "a: b: c", "- a\nb: c", "a:\n\t- b", "{a: 1, a: 2"])
def test_invalid_yaml_is_refused_with_safe_loads_own_message(text: str) -> None:
    with pytest.raises(yaml.YAMLError) as expected:
        yaml.safe_load(text)
    with pytest.raises(CatalogueError) as refused:
        parse_catalogue(text, OPS_ENV, source="c.yaml")
    assert str(refused.value) == f"c.yaml: not valid YAML ({expected.value})"
