"""Isolation: commands run as RUN_AS_USER and cannot reach the gateway's secrets or database.

The gateway runs here as a real separate process (production settings, its
secrets in its real environment), because what is being proved is what
another process can read through /proc. Needs root (to switch users) and the
unprivileged account ``gatewayrun`` (``.ci/run`` and ``make test`` create it);
with ``GATEWAY_TEST_REQUIRE_RUN_AS_USER=1`` (CI) its absence is a failure.
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from config import PROJECT_ROOT
from tests.runas import require_run_as_user

RUN_AS_USER = require_run_as_user(module_level=True)

SECRET_KEY = "isolation-secret-key-" + "k" * 40
AUDIT_KEY = "isolation-audit-key-" + "a" * 40
SYSTEM_PYTHON = "/usr/bin/python3"

CATALOGUE = """
commands:
  - name: read-parent-environ
    title: Try to read the gateway's environment
    kind: shell
    argv: ["{py}", "-c", "import os,sys\\ntry:\\n  data = open('/proc/%d/environ' % os.getppid(), 'rb').read()\\n  sys.stdout.write(data.decode('latin-1'))\\nexcept OSError as e:\\n  print('denied', e.errno)"]
  - name: write-database
    title: Try to open the gateway database for writing
    kind: shell
    argv: ["{py}", "-c", "import sys\\ntry:\\n  open(sys.argv[1], 'r+b')\\n  print('opened')\\nexcept OSError as e:\\n  print('denied', e.errno)", "{db}"]
  - name: env-dump
    title: Print the environment
    kind: shell
    argv: ["{py}", "-c", "import json,os; print(json.dumps(dict(os.environ)))"]
  - name: whoami
    title: Who am I
    kind: shell
    argv: ["id", "-u"]
"""

GATEWAY_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from gateway import create_app, runs
    from gateway.db import migrate
    from gateway.identity import accounts
    from gateway.platform.extensions import db
    from gateway.db.models import Run

    app = create_app(instance_path=sys.argv[1])
    out = {}
    with app.app_context():
        migrate.upgrade()
        user = accounts.create_user("admin", "admin-password-123", is_admin=True)
        caller = runs.Caller(user=user, source_ip="127.0.0.1")
        for name in ("read-parent-environ", "write-database", "env-dump", "whoami"):
            run_id = runs.start(name, {}, caller).run.id
            for _ in range(200):
                db.session.rollback()
                run = db.session.get(Run, run_id)
                db.session.refresh(run)
                if run.status not in runs.LIVE:
                    break
                time.sleep(0.05)
            out[name] = {"status": run.status, "output": runs.output_text(run_id)}
        app.extensions["gateway.executor"].shutdown()
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, str]]:
    directory = tmp_path_factory.mktemp("isolation")
    instance = directory / "instance"
    database = instance / "gateway.db"
    catalogue = directory / "commands.yaml"
    catalogue.write_text(CATALOGUE.format(py=SYSTEM_PYTHON, db=database))
    os.chmod(directory, 0o755)  # the run-as user may traverse to the catalogue's folder, not into instance/
    environ = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GATEWAY_ENV": "production",
        "SECRET_KEY": SECRET_KEY,
        "AUDIT_KEY": AUDIT_KEY,
        "DATABASE_URL": f"sqlite:///{database}",
        "GATEWAY_COMMANDS_FILE": str(catalogue),
        "RUN_AS_USER": RUN_AS_USER,
        "PUBLIC_BASE_URL": "https://ops.example.com",
    }
    completed = subprocess.run(
        [sys.executable, "-c", GATEWAY_SCRIPT, str(instance)],
        cwd=PROJECT_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_commands_run_as_the_unprivileged_account(observed):
    assert observed["whoami"]["output"].strip() == str(pwd.getpwnam(RUN_AS_USER).pw_uid)


def test_a_command_cannot_read_the_gateway_environment(observed):
    output = observed["read-parent-environ"]["output"]
    assert output.startswith("denied"), output
    assert SECRET_KEY not in output and AUDIT_KEY not in output


def test_a_command_cannot_open_the_database_for_writing(observed):
    assert observed["write-database"]["output"].startswith("denied")


def test_a_command_sees_none_of_the_gateway_secrets(observed):
    env = json.loads(observed["env-dump"]["output"])
    assert not any(SECRET_KEY in value or AUDIT_KEY in value for value in env.values())
    assert set(env) == {"PATH", "LANG", "LC_ALL", "HOME", "GATEWAY_USER", "GATEWAY_RUN_ID"}


def test_the_instance_folder_is_private(tmp_path: Path):
    from gateway import create_app
    from tests.conftest import base_environ

    instance = tmp_path / "instance"
    create_app(base_environ(f"sqlite:///{tmp_path / 'x.db'}"), instance_path=instance)
    assert (instance.stat().st_mode & 0o777) == 0o700
