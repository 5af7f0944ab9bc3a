"""The catalogue and data the web tests (HTTP and browser) share: small real commands, a real SQLite data source."""

from __future__ import annotations

import sqlite3
import sys
import textwrap
from pathlib import Path

from gateway.identity import accounts, groups

PY = sys.executable
SCRIPT_TAG = "<script>window.__pwned = 1</script>"

CATALOGUE = textwrap.dedent(
    f"""
    datasources:
      ops:
        url_env: WEB_TEST_OPS_DB_URL
      missing:
        url_env: WEB_TEST_UNSET_DB_URL
    commands:
      - name: greet
        title: Greet people
        description: Prints a greeting to stdout and a warning to stderr.
        category: Tools
        kind: shell
        argv: ["{PY}", "-c", "import sys,time; print('hello', sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]); sys.stdout.flush(); time.sleep(0.05); print('careful', file=sys.stderr)", "{{who}}", "{{count}}", "{{loud}}", "--when={{when}}", "{{items}}"]
        params:
          who: {{type: string, required: true, pattern: "[A-Za-z ]+", help: "Letters and spaces only."}}
          count: {{type: integer, min: 1, max: 5, default: 2}}
          loud: {{type: boolean, default: false}}
          when: {{type: date, default: "2024-01-31"}}
          items: {{type: list, pattern: "[a-z]+"}}
          mode: {{type: choice, choices: [fast, slow], default: fast}}
          pin: {{type: string, secret: true, label: "PIN"}}
      - name: scripty
        title: Prints markup
        category: Tools
        kind: shell
        argv: ["{PY}", "-c", "print({SCRIPT_TAG!r}); print('<b>bold</b> & done')"]
      - name: slow-lines
        title: Slow lines
        description: Prints a line, sleeps, prints again.
        category: Tools
        kind: shell
        argv: ["{PY}", "-u", "-c", "import time\\nfor i in range(1, 5):\\n    print('line', i)\\n    time.sleep(0.8)"]
        timeout: 30
      - name: long-sleep
        title: Long sleep
        category: Tools
        kind: shell
        argv: ["{PY}", "-u", "-c", "import time; print('started'); time.sleep(60)"]
        timeout: 120
      - name: chatty
        title: Too much output
        category: Tools
        kind: shell
        argv: ["{PY}", "-c", "print('x' * 5000)"]
        max_output_bytes: 1024
      - name: checksum
        title: Checksum
        category: Tools
        kind: shell
        argv: ["sha256sum", "{{upload}}"]
        params:
          upload: {{type: file, required: true}}
      - name: tasks
        title: Tasks by status
        category: Reports
        kind: query
        datasource: ops
        sql: "SELECT id, name, note, score FROM tasks WHERE status = :status ORDER BY id"
        params:
          status: {{type: choice, choices: [ok, bad], required: true}}
      - name: board
        title: Service board
        description: The current status of everything.
        category: Reports
        kind: query
        datasource: ops
        sql: "SELECT status, COUNT(*) AS n FROM tasks GROUP BY status ORDER BY status"
        cache_seconds: 60
        dashboard: true
      - name: nodb
        title: Needs a data source
        category: Reports
        kind: query
        datasource: missing
        sql: "SELECT 1"
      - name: admin-only
        title: Admins only
        category: Secret
        kind: shell
        argv: ["true"]
    """
)
STAFF_COMMANDS = ["greet", "scripty", "slow-lines", "long-sleep", "chatty", "checksum", "tasks", "board", "nodb"]


def write_catalogue(directory: Path) -> Path:
    path = directory / "web-commands.yaml"
    path.write_text(CATALOGUE)
    return path


def make_ops_db(directory: Path) -> str:
    """A small data source: numbers, NULL and an empty string, and a cell a spreadsheet would run."""
    path = directory / "web-ops.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, name TEXT, note TEXT, score REAL, status TEXT)")
        connection.executemany(
            "INSERT INTO tasks (name, note, score, status) VALUES (?, ?, ?, ?)",
            [
                ("backup", None, 1.5, "ok"),
                ("=HYPERLINK(1)", "", 20, "ok"),
                ("<i>tag</i>", "fine", None, "ok"),
                ("broken", "x", -3, "bad"),
            ],
        )
    return f"sqlite:///{path}"


def grant_staff(app) -> None:
    """staff and other in group ops with every command except admin-only; admin sees all."""

    with app.app_context():
        groups.create_group("ops")
        for name in STAFF_COMMANDS:
            groups.add_grant("ops", name)
        groups.add_member("ops", "staff")
        if accounts.find_user("other") is not None:
            groups.add_member("ops", "other")
