"""One compiled URL builder per distinct route in the test process, not one per route per app.

Werkzeug compiles two small Python functions (``compile()`` of a generated AST) for every
route of every app, to build its URLs: about 40 ms of the ~50 ms a test spends creating
its app, and the suite creates well over a thousand apps from the same routes.  For a
route without defaults the generated function depends only on the rule text, its parsed
trace and ``append_unknown``; the function reads the converters through the rule it is
bound to.  So the compiled function is kept per such key and bound to each new rule, as
werkzeug binds it.  Routes with defaults are compiled as before.
tests/test_route_builders.py checks the cached functions against fresh compilations.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.routing.rules import Rule

_compile_builder = Rule._compile_builder
_compiled: dict[tuple[Any, ...], Callable[..., tuple[str, str]]] = {}


def _cached_compile_builder(self: Rule, append_unknown: bool = True) -> Callable[..., tuple[str, str]]:
    if self.defaults:
        return _compile_builder(self, append_unknown)
    key = (self.rule, tuple(self._trace), append_unknown)
    function = _compiled.get(key)
    if function is None:
        function = _compiled[key] = _compile_builder(self, append_unknown)
    return function


def install() -> None:
    Rule._compile_builder = _cached_compile_builder  # type: ignore[method-assign]


def fresh_builder(rule: Rule, append_unknown: bool) -> Callable[..., tuple[str, str]]:
    """What werkzeug itself compiles for ``rule`` (for the test of the cache)."""
    return _compile_builder(rule, append_unknown)
