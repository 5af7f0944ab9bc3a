"""Parameter validation: default-deny, strict JSON types, form strings parsed, every error names its field."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from gateway.catalogue import Command
from gateway.catalogue.params import MASK, FileValue, ParamError, RefusedUpload
from gateway.catalogue.values import canonical_key, collect_errors, masked, validate_params


def command(params: dict[str, dict[str, Any]], **fields: Any) -> Command:
    argv = ["echo"] + [f"{{{name}}}" for name, spec in params.items() if not spec.get("secret")]
    return Command.model_validate({"name": "demo", "title": "Demo", "kind": "shell", "argv": argv, "params": params})


def one(spec: dict[str, Any], value: Any, source: str = "json") -> Any:
    return validate_params(command({"p": spec}), {"p": value}, source)["p"]


def refused(spec: dict[str, Any], value: Any, source: str = "json") -> ParamError:
    with pytest.raises(ParamError) as caught:
        one(spec, value, source)
    assert caught.value.field.startswith("p")
    return caught.value


# --- default deny --------------------------------------------------------------------------------


def test_undeclared_params_are_rejected_by_name() -> None:
    values, errors = collect_errors(command({"p": {}}), {"p": "ok", "extra": "x", "rm": "-rf"})
    assert errors == {"extra": "is not a parameter of this command", "rm": "is not a parameter of this command"}
    assert values["p"] == "ok"


def test_declared_params_errors_come_before_invented_names() -> None:
    """A record that keeps only the first names (gateway.bounds) then still shows the real mistake."""
    invented = {f"x{i}": 1 for i in range(50)}
    _, errors = collect_errors(command({"p": {"required": True}, "n": {"type": "integer"}}), {**invented, "n": "1"})
    assert list(errors)[:2] == ["p", "n"] and len(errors) == 52


def test_params_must_be_an_object() -> None:
    assert collect_errors(command({"p": {}}), ["p"]) == ({}, {"params": "must be an object"})


def test_collect_errors_reports_every_bad_field() -> None:
    spec = {"a": {"type": "integer"}, "b": {"type": "boolean"}, "c": {"required": True}}
    _, errors = collect_errors(command(spec), {"a": "x", "b": "x"})
    assert set(errors) == {"a", "b", "c"}


def test_required_and_defaults() -> None:
    spec = {"need": {"required": True}, "lines": {"type": "integer", "default": 50}, "opt": {}}
    cmd = command(spec)
    with pytest.raises(ParamError) as caught:
        validate_params(cmd, {})
    assert caught.value.field == "need" and "required" in str(caught.value)
    assert validate_params(cmd, {"need": "x"}) == {"need": "x", "lines": 50, "opt": None}
    assert validate_params(cmd, {"need": "x", "lines": 7, "opt": None}) == {"need": "x", "lines": 7, "opt": None}
    # an empty form field for a non-string means "not given": the default applies
    assert validate_params(cmd, {"need": "x", "lines": ""}, "form")["lines"] == 50


def test_no_params_at_all() -> None:
    assert validate_params(command({}), None) == {}
    assert validate_params(command({}), {}) == {}


# --- types, JSON ------------------------------------------------------------------------------


def test_string() -> None:
    assert one({}, "hello world") == "hello world"
    for bad in (5, 1.5, True, ["a"], {"a": 1}):
        assert "string" in str(refused({}, bad))


@pytest.mark.parametrize("bad", ["5", "five", True, False, 1.5, 5.0, [5], {"n": 5}])
def test_integer_json_types_are_strict(bad: Any) -> None:
    assert "whole number" in str(refused({"type": "integer"}, bad))


def test_integer_bounds() -> None:
    spec = {"type": "integer", "min": 1, "max": 1000}
    assert one(spec, 1) == 1 and one(spec, 1000) == 1000
    assert "at least 1" in str(refused(spec, 0))
    assert "at most 1000" in str(refused(spec, 1001))
    # 64 bits whatever the source, so a form and JSON refuse the same values (tests/test_param_sources.py)
    assert one({"type": "integer"}, 2**63 - 1) == 2**63 - 1 and one({"type": "integer"}, -(2**63)) == -(2**63)
    for bad in (2**63, -(2**63) - 1, 10**30):
        assert "between" in str(refused({"type": "integer"}, bad))
        assert "between" in str(refused({"type": "integer"}, str(bad), "form"))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_number_rejects_nan_and_infinity(bad: float) -> None:
    assert "number" in str(refused({"type": "number"}, bad))


def test_number() -> None:
    assert one({"type": "number"}, 1.5) == 1.5
    assert one({"type": "number"}, 2) == 2
    assert one({"type": "number"}, 10**300) == 10**300
    assert "finite" in str(refused({"type": "number"}, 10**400))  # past any double: refused, not a crash
    for bad in ("1.5", True, "abc", [1.0]):
        refused({"type": "number"}, bad)
    assert "at most 2.5" in str(refused({"type": "number", "max": 2.5}, 2.6))
    assert "at least -1" in str(refused({"type": "number", "min": -1}, -1.01))


def test_boolean_json() -> None:
    assert one({"type": "boolean"}, True) is True
    assert one({"type": "boolean"}, False) is False
    for bad in ("true", 1, 0, "yes", [True]):
        assert "true or false" in str(refused({"type": "boolean"}, bad))


def test_choice_json() -> None:
    spec = {"type": "choice", "choices": ["Success", "Pending", "Failed"]}
    assert one(spec, "Pending") == "Pending"
    for bad in ("pending", "Success ", "", ["Success"], 1):
        assert "one of Success, Pending, Failed" in str(refused(spec, bad))


def test_numeric_choice_json_keeps_the_type_strict() -> None:
    spec = {"type": "choice", "choices": [10, 20]}
    assert one(spec, 10) == 10
    for bad in ("10", 10.0, True, 30):
        refused(spec, bad)


def test_date() -> None:
    assert one({"type": "date"}, "2024-02-29") == "2024-02-29"
    for bad in ("2023-02-29", "2024-13-01"):
        assert "real date" in str(refused({"type": "date"}, bad))
    for bad in ("2024-1-1", "01/02/2024", "2024-01-01T00:00", "\uff12\uff10\uff12\uff14-01-01", 20240101):
        assert "date like" in str(refused({"type": "date"}, bad))


def test_list_json() -> None:
    spec = {"type": "list", "max_items": 3, "max_length": 5}
    assert one(spec, ["a", "b c", ""]) == ["a", "b c", ""]
    assert one(spec, []) == []
    assert "more than 3" in str(refused(spec, ["a", "b", "c", "d"]))
    error = refused(spec, ["ok", 5])
    assert error.field == "p[1]" and "string" in error.message
    error = refused(spec, ["ok", "toolong"])
    assert error.field == "p[1]" and "longer than 5" in error.message
    assert "list" in str(refused(spec, "a"))


def test_list_items_follow_the_pattern() -> None:
    spec = {"type": "list", "pattern": "[a-z]+"}
    assert one(spec, ["abc", "def"]) == ["abc", "def"]
    assert refused(spec, ["abc", "ABC"]).field == "p[1]"


def test_file() -> None:
    upload = FileValue(path="/tmp/run/abc", original_name="report.csv", size=12, sha256="0" * 64)
    assert one({"type": "file"}, upload) is upload
    assert one({"type": "file"}, upload, "form") is upload
    assert "uploaded file" in str(refused({"type": "file"}, "/etc/passwd", "form"))  # a path typed into a form
    for bad in ("/etc/passwd", {"path": "/etc/passwd"}):
        assert "uploaded file" in str(refused({"type": "file"}, bad))


# --- types, forms ------------------------------------------------------------------------------


def test_form_integer() -> None:
    assert one({"type": "integer"}, "42", "form") == 42
    assert one({"type": "integer"}, " -7 ", "form") == -7
    for bad in ("4.2", "1e3", "0x10", "\u0665", "1_000", "five"):
        assert "whole number" in str(refused({"type": "integer"}, bad, "form"))


def test_form_integer_and_number_read_digits_as_json_does() -> None:
    """The same digits give the same value from a form as from JSON: no float from one and an int from the other."""
    digits = "1" * 30
    assert one({"type": "number"}, digits, "form") == int(digits) == one({"type": "number"}, int(digits))
    assert "finite" in str(refused({"type": "number"}, "1" * 400, "form"))
    assert "whole number" in str(refused({"type": "integer"}, "1" * 5000, "form"))  # past what int() reads


@pytest.mark.parametrize("padded", ["12\n", "\r12", "12\u2028", "12\x00", "\x0b12", "12\x1c"])
def test_form_numbers_and_booleans_trim_only_spaces_and_tabs(padded: str) -> None:
    assert one({"type": "integer"}, " \t12 ", "form") == 12
    refused({"type": "integer"}, padded, "form")
    refused({"type": "number"}, padded, "form")
    refused({"type": "boolean"}, padded.replace("12", "true"), "form")


def test_form_number() -> None:
    assert one({"type": "number"}, "2.5", "form") == 2.5
    assert one({"type": "number"}, "-1e3", "form") == -1000.0
    five = one({"type": "number"}, "5", "form")
    assert five == 5 and isinstance(five, int)  # same as JSON's 5: same argv text, same cache key
    for bad in ("nan", "inf", "infinity", "1e999", "1_000", "1,5", "abc"):
        assert "number" in str(refused({"type": "number"}, bad, "form"))


def test_form_boolean() -> None:
    for text in ("true", "on", "1", "yes", "TRUE"):
        assert one({"type": "boolean"}, text, "form") is True
    for text in ("false", "off", "0", "no"):
        assert one({"type": "boolean"}, text, "form") is False
    assert one({"type": "boolean", "default": True}, "", "form") is True  # absent: default
    refused({"type": "boolean"}, "maybe", "form")


def test_form_choice_maps_text_back_to_the_declared_value() -> None:
    assert one({"type": "choice", "choices": [10, 20]}, "20", "form") == 20
    assert one({"type": "choice", "choices": ["a", "b"]}, "b", "form") == "b"
    refused({"type": "choice", "choices": [10, 20]}, "30", "form")


def test_form_date_and_string() -> None:
    assert one({"type": "date"}, "2024-01-31", "form") == "2024-01-31"
    assert one({}, "", "form") == ""  # an empty string field is a given, empty string


def test_form_list_is_one_item_per_line() -> None:
    assert one({"type": "list"}, "alpha\n\nbeta\r\n  \ngamma", "form") == ["alpha", "beta", "gamma"]


# --- text limits and dangerous characters -------------------------------------------------------


def test_max_length_and_default_limit() -> None:
    assert one({"max_length": 3}, "abc") == "abc"
    assert "longer than 3" in str(refused({"max_length": 3}, "abcd"))
    assert "longer than 4096" in str(refused({}, "x" * 4097))


def test_pattern_is_a_full_match() -> None:
    spec = {"pattern": "[a-z]+"}
    assert one(spec, "abc") == "abc"
    for bad in ("abc1", "1abc", "ab c", "abc\n"):
        assert "pattern" in str(refused(spec, bad))


@pytest.mark.parametrize(
    "bad",
    [
        "a\x00b",
        "line\nbreak",
        "line\rbreak",
        "a\x0bb",
        "a\x0cb",
        "a\x85b",
        "a\u2028b",
        "a\u2029b",
        "\x1b[31mred",
        "a\x7fb",
        "a\x9bb",
        "a\x07b",
    ],
)
def test_nul_newlines_and_control_characters_are_rejected(bad: str) -> None:
    assert "must not contain" in str(refused({}, bad))
    error = refused({"type": "list"}, ["fine", bad])
    assert error.field == "p[1]"


def test_tab_and_ordinary_unicode_are_fine() -> None:
    assert one({}, "a\tb") == "a\tb"
    text = "gr\u00fc\u00dfe \u2010 \u65e5\u672c"
    assert one({}, text) == text


def test_a_pattern_decides_which_characters_are_allowed() -> None:
    assert one({"pattern": r"[a-z\n]+"}, "ab\ncd") == "ab\ncd"
    refused({"pattern": r"[a-z]+"}, "ab\ncd")


def test_no_pattern_admits_a_nul() -> None:
    """No argv, environment or database text can carry a NUL: refused before anything is spawned."""
    assert "NUL" in str(refused({"pattern": r"(?s).*"}, "a\x00b"))
    assert refused({"type": "list", "pattern": r"[^/]*"}, ["ok", "\x00"]).field == "p[1]"


def test_a_refused_upload_is_refused_by_name_whatever_the_type() -> None:
    cmd = command({"n": {"type": "integer"}, "f": {"type": "file"}, "items": {"type": "list"}})
    raw = {"n": RefusedUpload("takes text"), "f": RefusedUpload("not referenced"), "items": ["a"]}
    values, errors = collect_errors(cmd, raw, "form")
    assert errors == {"n": "takes text", "f": "not referenced"} and values["items"] == ["a"]


# --- masking and cache keys ---------------------------------------------------------------------


def test_masked_hides_secrets_and_describes_files() -> None:
    cmd = command({"user": {}, "token": {"secret": True}, "upload": {"type": "file"}, "note": {"secret": True}})
    upload = FileValue(path="/tmp/run-1/f0", original_name="data.csv", size=3, sha256="ab" * 32)
    shown = masked(cmd, {"user": "alice", "token": "s3cr3t", "upload": upload, "note": None})
    assert shown == {
        "user": "alice",
        "token": MASK,
        "upload": {"file": "data.csv", "size": 3, "sha256": "ab" * 32},
        "note": None,
    }
    assert "s3cr3t" not in repr(shown) and "/tmp/run-1" not in repr(shown)


SERVER_KEY = "server-secret-key-" + "k" * 32


def test_canonical_key_is_stable_across_key_order_and_distinguishes_values() -> None:
    cmd = command({"a": {}, "b": {"type": "integer"}})
    key = canonical_key(cmd, {"a": "x", "b": 1}, SERVER_KEY)
    assert key == canonical_key(cmd, {"b": 1, "a": "x"}, SERVER_KEY)
    assert key != canonical_key(cmd, {"a": "x", "b": 2}, SERVER_KEY)
    assert key != canonical_key(cmd, {"a": "y", "b": 1}, SERVER_KEY)
    other = Command.model_validate({"name": "other", "title": "Other", "kind": "shell", "argv": ["echo"], "params": {}})
    assert canonical_key(other, {}, SERVER_KEY) != canonical_key(command({}), {}, SERVER_KEY)


def test_the_cache_key_needs_the_server_key_to_compute() -> None:
    """Someone reading ``runs.cache_key`` cannot test guessed params offline without the server's key."""
    cmd = command({"a": {}})
    key = canonical_key(cmd, {"a": "guess"}, SERVER_KEY)
    plain = json.dumps({"command": cmd.name, "params": {"a": "guess"}}, sort_keys=True, default=str)
    assert key not in (hashlib.sha256(plain.encode()).hexdigest(), hashlib.sha256(b"guess").hexdigest())
    assert key != canonical_key(cmd, {"a": "guess"}, "another-server-key-" + "k" * 32)
    assert len(key) == 64  # the column's width


def test_form_and_json_give_the_same_cache_key() -> None:
    cmd = command({"n": {"type": "number"}, "k": {"type": "integer"}, "c": {"type": "choice", "choices": [1, 2]}})
    from_json = validate_params(cmd, {"n": 5, "k": 3, "c": 2})
    from_form = validate_params(cmd, {"n": "5", "k": "3", "c": "2"}, "form")
    assert canonical_key(cmd, from_json, SERVER_KEY) == canonical_key(cmd, from_form, SERVER_KEY)


def test_lone_surrogates_are_refused() -> None:
    """JSON's "\\ud800" decodes to a lone surrogate, which no argv, env or log can carry."""
    assert "Unicode" in str(refused({}, "a\ud800b"))
    assert refused({"type": "list"}, ["ok", "\udfff"]).field == "p[1]"
