"""What every browser test shares: Debian's Chromium (required in CI, else skipped), one per module, SQLite.

Playwright's own browser download does not work here, so the tests launch
``/usr/bin/chromium``; with ``GATEWAY_TEST_REQUIRE_BROWSER=1`` (CI) a missing
binary is an error instead of a skip. The servers under test run on SQLite only:
the HTTP tests cover PostgreSQL, one real server per test is cost enough.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

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
