"""What every browser test shares: Debian's Chromium (required in CI, else skipped), one per module, SQLite.

Playwright's own browser download does not work here, so the tests launch
``/usr/bin/chromium``; with ``GATEWAY_TEST_REQUIRE_BROWSER=1`` (CI) a missing
binary is an error instead of a skip. The servers under test run on SQLite only:
the HTTP tests cover PostgreSQL, one real server per test is cost enough.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

if not os.path.exists(CHROMIUM):
    if os.environ.get("GATEWAY_TEST_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"GATEWAY_TEST_REQUIRE_BROWSER=1 but {CHROMIUM} is missing")
    collect_ignore_glob = ["test_*.py"]  # skipped: Chromium is not installed

# Assertions wait as long as actions do: CI runs these next to the rest of the suite on 2 cores.
expect.set_options(timeout=15_000)


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def served(app: Flask, host: str = "127.0.0.1") -> Iterator[str]:
    """The app on a threaded server at a free port of ``host``; its base URL (links point there too)."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    base = f"http://{host}:{server.server_port}"
    app.config["PUBLIC_BASE_URL"] = base  # what manage.py serve does
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield base
    finally:
        server.shutdown()
        thread.join(5)


def new_tab(
    browser: Browser, base_url: str, console: list[str], who: str = "", **options: Any
) -> tuple[BrowserContext, Page]:
    """A tab in a fresh browser context (another person's browser); console lines go to ``console``.

    ``options``: more of Playwright's context options (``timezone_id``, ``locale``, ...)."""
    context = browser.new_context(base_url=base_url, **options)
    tab = context.new_page()
    tab.set_default_timeout(15_000)
    prefix = f"{who} " if who else ""
    tab.on("console", lambda message: console.append(f"{prefix}{message.type}: {message.text}"))
    tab.on("pageerror", lambda error: console.append(f"{prefix}pageerror: {error}"))
    return context, tab
