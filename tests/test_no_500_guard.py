"""The no-500 guard (tests/conftest.py): a request that answered 500 fails its test unless marked ``allow_500``.

Shown on a pytest run of its own, so the failure it provokes is the thing checked.
"""

from __future__ import annotations

import pytest

INLINE_TESTS = """
import threading

import pytest
from flask import Flask
from werkzeug.serving import make_server


def boom_app():
    app = Flask("boom")

    @app.errorhandler(Exception)
    def page(exc):  # like gateway.errors: the exception becomes a 500 page, no exception escapes
        return "Something went wrong on our side.", 500

    @app.route("/boom")
    def boom():
        raise RuntimeError("boom")

    @app.route("/fine")
    def fine():
        return "ok"

    return app


def test_unmarked():
    assert boom_app().test_client().get("/boom?x=1").status_code == 500


@pytest.mark.allow_500("the 500 page is what this test looks at")
def test_marked():
    assert boom_app().test_client().get("/boom").status_code == 500


def test_clean():
    assert boom_app().test_client().get("/fine").status_code == 200


def test_in_a_server_thread():
    import urllib.error
    import urllib.request

    server = make_server("127.0.0.1", 0, boom_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/boom", timeout=5)
    finally:
        server.shutdown()
"""


@pytest.mark.allow_500("the inline run's 500s are answered in this test's process too")
def test_a_500_fails_the_test_unless_it_is_marked(pytester):
    pytester.makeconftest("from tests.conftest import no_500_guard, pytest_runtest_call  # noqa: F401\n")
    pytester.makeini("[pytest]\nmarkers =\n    allow_500(reason): on purpose\n")
    pytester.makepyfile(test_inline=INLINE_TESTS)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:xdist", "-p", "no:randomly")
    result.assert_outcomes(passed=2, failed=2)
    result.stdout.fnmatch_lines(["*test_unmarked*", "*Failed: 1 request(s) answered 500*", "*GET /boom?x=1"])
    result.stdout.fnmatch_lines(["*test_in_a_server_thread*", "*Failed: 1 request(s) answered 500*", "*GET /boom"])
    result.stdout.fnmatch_lines(["FAILED test_inline.py::test_unmarked*", "FAILED test_inline.py::test_in_a_server*"])
