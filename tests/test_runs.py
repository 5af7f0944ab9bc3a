"""The run chokepoint end to end: real processes, real databases, the audit it leaves behind.

Every test runs on SQLite and PostgreSQL (the ``app`` fixtures). Commands come
from a catalogue written for these tests; the program is the test's own Python
interpreter so what a child saw can be printed as JSON and checked.
"""

from __future__ import annotations

import json
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import event, func, select, text

from gateway import audit, runs
from gateway.catalogue import switches
from gateway.db import dialect
from gateway.db.models import AuditEvent, Run
from gateway.identity import accounts, groups
from gateway.platform import signals
from gateway.platform.extensions import db
from gateway.runs import uploads

pytestmark = pytest.mark.both_engines  # runs: admission lock, leases, the terminal write and the reaper per engine

PY = sys.executable
CATALOGUE = textwrap.dedent(
    f"""
    datasources:
      ops:
        url_env: TEST_OPS_DB_URL
        row_limit: 3
    commands:
      - name: show-argv
        title: Show argv
        kind: shell
        argv: ["{PY}", "-c", "import json,sys; print(json.dumps(sys.argv[1:]))", "--", "{{word}}", "{{items}}"]
        params:
          word: {{type: string, required: true}}
          items: {{type: list}}
      - name: started-at
        title: Prints when it started
        kind: shell
        argv: ["{PY}", "-c", "import time; print(time.time())"]
      - name: nap
        title: Sleeps
        kind: shell
        argv: ["sleep", "{{seconds}}"]
        params:
          seconds: {{type: integer, min: 0, max: 60, default: 30}}
        timeout: 1
        concurrency: 2
      - name: long-nap
        title: Sleeps longer
        kind: shell
        argv: ["sleep", "30"]
        timeout: 60
      - name: counted
        title: Appends a line to a file each time it runs
        kind: shell
        argv: ["sh", "-c", "echo run >> \\"$1\\"; sleep 0.5; echo done", "counted", "{{path}}"]
        params:
          path: {{type: string, pattern: "/[A-Za-z0-9/_.-]+"}}
        cache_seconds: 60
      - name: limited
        title: Rate limited
        kind: shell
        argv: ["true"]
        rate_limit: 2/minute
      - name: fenced
        title: Only from 10.0.0.0/8
        kind: shell
        argv: ["true"]
        allowed_networks: ["10.0.0.0/8"]
      - name: with-secret
        title: Takes a secret through the environment
        kind: shell
        argv: ["{PY}", "-c", "import os; print(len(os.environ['TOKEN']))"]
        env:
          TOKEN: "{{token}}"
        params:
          token: {{type: string, secret: true, required: true}}
      - name: env-dump
        title: Prints its environment
        kind: shell
        argv: ["{PY}", "-c", "import json,os; print(json.dumps(dict(os.environ)))"]
      - name: checksum
        title: Checksum of an uploaded file
        kind: shell
        argv: ["sha256sum", "{{upload}}"]
        params:
          upload: {{type: file, required: true}}
      - name: tasks
        title: Tasks
        kind: query
        datasource: ops
        sql: "SELECT id, name FROM tasks WHERE status = :status ORDER BY id"
        params:
          status: {{type: choice, choices: [ok, bad], required: true}}
    """
)


@pytest.fixture
def catalogue_path(tmp_path: Path) -> Path:
    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    return path


@pytest.fixture
def ops_db(tmp_path: Path) -> str:
    import sqlite3

    path = tmp_path / "ops.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE tasks (id INTEGER PRIMARY KEY, name TEXT, status TEXT)")
        connection.executemany(
            "INSERT INTO tasks (name, status) VALUES (?, ?)", [(f"t{i}", "ok" if i % 2 else "bad") for i in range(10)]
        )
    return f"sqlite:///{path}"


@pytest.fixture
def engine_app(make_app, catalogue_path, ops_db, monkeypatch):
    monkeypatch.setenv("TEST_OPS_DB_URL", ops_db)
    return make_app(GATEWAY_COMMANDS_FILE=catalogue_path, RUN_HEARTBEAT_SECONDS=1)


@pytest.fixture
def people(engine_app):

    with engine_app.app_context():
        admin = accounts.create_user("admin", "admin-password-123", is_admin=True)
        staff = accounts.create_user("staff", "staff-password-123")
        groups.create_group("ops")
        groups.add_member("ops", "staff")
    return {"admin": admin, "staff": staff}


def caller(user, address: str = "127.0.0.1") -> runs.Caller:
    return runs.Caller(user=user, source_ip=address, user_agent="pytest")


def wait_for(run_id: str, timeout: float = 15.0) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()  # a fresh snapshot each look
        run = db.session.get(Run, run_id)
        db.session.refresh(run)
        if run.status not in runs.LIVE or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def events(run_id: str | None = None, event: str | None = None) -> list[AuditEvent]:
    db.session.rollback()
    query = select(AuditEvent).order_by(AuditEvent.seq)
    if run_id is not None:
        query = query.where(AuditEvent.run_id == run_id)
    if event is not None:
        query = query.where(AuditEvent.event == event)
    return list(db.session.scalars(query))


def chain_ok(app) -> bool:
    return audit.verify(db.session, audit.Keyring.from_config(app.config)).ok


def run_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Run))


# --- the happy path -------------------------------------------------------------------------


def test_a_run_executes_once_with_both_audit_events(engine_app, people):
    with engine_app.app_context():
        started = runs.start(
            "show-argv", {"word": "; rm -rf / $(id) `id`", "items": ["a b", "-x"]}, caller(people["admin"])
        )
        run = wait_for(started.run.id)
        assert run.status == "succeeded" and run.exit_code == 0
        printed = json.loads(runs.output_text(run.id))
        assert printed == ["--", "; rm -rf / $(id) `id`", "a b", "-x"]  # literal, one element each
        assert run.output_sha256 and run.output_bytes == len(runs.output_text(run.id).encode())
        trail = events(run.id)
        assert [e.event for e in trail] == ["run.started", "run.finished"]
        definition = switches.current_catalogue().get("show-argv").definition_sha256()
        assert trail[0].detail["command_sha256"] == trail[1].detail["command_sha256"] == definition
        assert trail[1].outcome == "succeeded" and trail[1].detail["exit_code"] == 0
        assert trail[1].detail["output_sha256"] == run.output_sha256
        assert chain_ok(engine_app)


def test_the_audit_intent_is_committed_before_the_process_starts(engine_app, people):
    with engine_app.app_context():
        run = wait_for(runs.start("started-at", {}, caller(people["admin"])).run.id)
        process_started = float(runs.output_text(run.id))
        intent = events(run.id, "run.started")[0]
        assert intent.at.timestamp() <= process_started


def test_secrets_reach_the_command_but_not_the_record(engine_app, people):
    secret = "s3cr3t-value-that-must-not-leak"
    with engine_app.app_context():
        run = wait_for(runs.start("with-secret", {"token": secret}, caller(people["admin"])).run.id)
        assert run.status == "succeeded"
        assert runs.output_text(run.id).strip() == str(len(secret))
        assert run.params == {"token": "***"}
        dumped = db.session.execute(text("SELECT * FROM audit_events")).all()
        dumped += db.session.execute(text("SELECT * FROM runs")).all()
        assert secret not in repr(dumped)


def test_the_command_environment_is_scrubbed(engine_app, people):
    with engine_app.app_context():
        run = wait_for(runs.start("env-dump", {}, caller(people["admin"])).run.id)
        env = json.loads(runs.output_text(run.id))
        assert env["GATEWAY_USER"] == "admin" and env["GATEWAY_RUN_ID"] == run.id
        assert env["PATH"] == "/usr/local/bin:/usr/bin:/bin"
        assert not any(engine_app.config["SECRET_KEY"] in value for value in env.values())
        assert "TEST_OPS_DB_URL" not in env and "DATABASE_URL" not in env


def test_query_commands_return_a_bounded_table(engine_app, people):
    with engine_app.app_context():
        run = wait_for(runs.start("tasks", {"status": "ok"}, caller(people["admin"])).run.id)
        assert run.status == "succeeded", run.error
        assert run.result["columns"] == ["id", "name"]
        assert len(run.result["rows"]) == 3 and run.result["truncated"] is True  # row_limit 3 of 5


# --- refusals: audited, nothing executed ------------------------------------------------------


def assert_rejected(excinfo, status: int, outcome: str) -> None:
    assert excinfo.value.status == status
    last = events(event="run.rejected")[-1]
    assert last.outcome == outcome
    assert run_count() == 0


def test_process_groups_are_recorded_while_the_runs_go_on(engine_app, people):
    """What a worker starting after a crash would kill is on record within moments of the spawn.

    On SQLite, runs that start together share the commit that records their groups.
    """
    admin = caller(people["admin"])
    commits: list[int] = []
    with engine_app.app_context():
        ids = [runs.start("long-nap", {}, admin).run.id for _ in range(6)]

        def listener(*_: object) -> None:
            commits.append(1)

        event.listen(db.engine, "commit", listener)
        try:
            deadline = time.monotonic() + 10
            while True:
                db.session.rollback()
                rows = db.session.execute(select(Run.pgid, Run.status).where(Run.id.in_(ids))).all()
                if all(pgid for pgid, _ in rows) or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        finally:
            event.remove(db.engine, "commit", listener)
        assert [status for _, status in rows] == ["running"] * len(ids)
        assert all(pgid for pgid, _ in rows)
        if db.engine.dialect.name == "sqlite":
            assert len(commits) < len(ids)  # not one commit per run
        for run_id in ids:
            runs.cancel(run_id, admin)
        assert {wait_for(run_id).status for run_id in ids} == {"cancelled"}


def test_unknown_and_ungranted_commands_are_invisible(engine_app, people):
    with engine_app.app_context():
        for name in ("no-such-command", "nap"):
            with pytest.raises(runs.RunRejected) as excinfo:
                runs.start(name, {}, caller(people["staff"]))
            assert_rejected(excinfo, 404, "not_found")
        groups.add_grant("ops", "nap")
        assert runs.start("nap", {"seconds": 0}, caller(people["staff"])).run.command == "nap"


def test_invalid_params_name_the_field(engine_app, people):
    with engine_app.app_context():
        cases = [
            ({}, "word"),
            ({"word": "x", "extra": 1}, "extra"),
            ({"word": 5}, "word"),
            ({"word": "-rf"}, None),  # allowed: a `--` precedes it in argv
            ({"word": "x", "items": ["ok", 3]}, "items[1]"),
            ({"word": "a\nb"}, "word"),
            ({"word": "a\x00b"}, "word"),
        ]
        for params, field in cases:
            if field is None:
                assert runs.start("show-argv", params, caller(people["admin"])).run.status in runs.LIVE
                continue
            with pytest.raises(runs.RunRejected) as excinfo:
                runs.start("show-argv", params, caller(people["admin"]))
            assert excinfo.value.status == 400 and field in excinfo.value.details, (params, excinfo.value.details)
            assert events(event="run.rejected")[-1].detail["fields"] == excinfo.value.details


def test_a_form_field_given_twice_is_refused_not_reduced(engine_app, people):
    from werkzeug.datastructures import MultiDict

    with engine_app.app_context():
        form = MultiDict([("word", "harmless"), ("word", "; rm -rf /")])
        with pytest.raises(runs.RunRejected) as excinfo:
            runs.start("show-argv", form, caller(people["admin"]), source="form")
        assert excinfo.value.status == 400 and excinfo.value.details["word"] == "is given more than once"
        assert run_count() == 0


def test_allowed_networks_bind_admins_too(engine_app, people):
    """From outside its networks the command does not exist (404, as unknown); the ledger says why."""
    with engine_app.app_context():
        with pytest.raises(runs.RunRejected) as excinfo:
            runs.start("fenced", {}, caller(people["admin"], "127.0.0.1"))
        assert_rejected(excinfo, 404, "denied_network")
        assert runs.start("fenced", {}, caller(people["admin"], "10.1.2.3")).run.id


def test_a_draining_replica_refuses_new_runs_and_audits_it(engine_app, people):
    with engine_app.app_context():
        from gateway.runs.workers import get_executor

        get_executor(engine_app).shutdown(grace=0)
        with pytest.raises(runs.RunRejected) as excinfo:
            runs.start("nap", {"seconds": 0}, caller(people["admin"]))
        assert_rejected(excinfo, 503, "draining")


def test_the_kill_switch_refuses_runs(engine_app, people):
    with engine_app.app_context():
        switches.set_disabled("nap", True, actor={"id": None, "name": "test"}, reason="maintenance")
        with pytest.raises(runs.RunRejected) as excinfo:
            runs.start("nap", {"seconds": 0}, caller(people["admin"]))
        assert_rejected(excinfo, 409, "disabled")
        assert events(event="admin.command_disabled")[-1].command == "nap"
        switches.set_disabled("nap", False, actor={"id": None, "name": "test"})
        assert runs.start("nap", {"seconds": 0}, caller(people["admin"])).run.id


def test_the_per_user_rate_limit(engine_app, people):
    with engine_app.app_context():
        runs.start("limited", {}, caller(people["admin"]))
        runs.start("limited", {}, caller(people["admin"]))
        with pytest.raises(runs.RunRejected) as excinfo:
            runs.start("limited", {}, caller(people["admin"]))
        assert excinfo.value.status == 429 and excinfo.value.retry_after >= 1
        assert events(event="run.rejected")[-1].outcome == "rate_limited"


def test_concurrency_is_refused_not_queued(engine_app, people):
    with engine_app.app_context():
        first = runs.start("nap", {"seconds": 5}, caller(people["admin"]))
        runs.start("nap", {"seconds": 5}, caller(people["admin"]))
        with pytest.raises(runs.RunRejected) as excinfo:
            runs.start("nap", {"seconds": 5}, caller(people["admin"]))
        assert excinfo.value.status == 409
        assert events(event="run.rejected")[-1].outcome == "concurrency_full"
        runs.cancel(first.run.id, caller(people["admin"]))


def test_a_database_that_refuses_writes_means_503_and_nothing_spawned(engine_app, people, tmp_path):
    marker = tmp_path / "ran"
    with engine_app.app_context():
        bind = db.engine
        if bind.dialect.name == "sqlite":
            ddl = ["CREATE TRIGGER refuse BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END"]
        else:
            ddl = [
                "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$",
                "CREATE TRIGGER refuse BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse()",
            ]
        with bind.begin() as connection:
            for statement in ddl:
                connection.exec_driver_sql(statement)
        with pytest.raises(runs.RunRejected) as excinfo:
            runs.start("counted", {"path": str(marker)}, caller(people["admin"]))
        assert excinfo.value.status == 503
        time.sleep(0.5)
        assert not marker.exists()
        assert run_count() == 0


# --- endings: exactly one each --------------------------------------------------------------


def test_timeout_ends_as_timed_out(engine_app, people):
    with engine_app.app_context():
        run = wait_for(runs.start("nap", {"seconds": 30}, caller(people["admin"])).run.id)
        assert run.status == "timed_out"
        assert [e.outcome for e in events(run.id, "run.finished")] == ["timed_out"]


def test_cancel_mid_run(engine_app, people):
    with engine_app.app_context():
        started = runs.start("long-nap", {}, caller(people["admin"]))
        time.sleep(0.3)
        runs.cancel(started.run.id, caller(people["admin"]))
        run = wait_for(started.run.id)
        assert run.status == "cancelled"
        assert [e.event for e in events(run.id)] == ["run.started", "run.cancel_requested", "run.finished"]
        with pytest.raises(runs.RunRejected) as excinfo:
            runs.cancel(started.run.id, caller(people["admin"]))
        assert excinfo.value.status == 409


def test_staff_cannot_cancel_someone_elses_run(engine_app, people):
    with engine_app.app_context():
        started = runs.start("long-nap", {}, caller(people["admin"]))
        with pytest.raises(runs.RunRejected) as excinfo:
            runs.cancel(started.run.id, caller(people["staff"]))
        assert excinfo.value.status == 404
        runs.cancel(started.run.id, caller(people["admin"]))


def test_queued_only_while_no_slot_is_free(make_app, catalogue_path, people_factory=None):
    app = make_app(GATEWAY_COMMANDS_FILE=catalogue_path, RUN_WORKERS=1)

    with app.app_context():
        admin = accounts.create_user("admin", "admin-password-123", is_admin=True)
        first = runs.start("started-at", {}, caller(admin))
        busy = runs.start("long-nap", {}, caller(admin))
        wait_for(first.run.id)
        waiting = runs.start("started-at", {}, caller(admin))
        assert waiting.run.status == "queued"
        runs.cancel(busy.run.id, caller(admin))
        assert wait_for(waiting.run.id).status == "succeeded"
        queued_cancel = runs.start("long-nap", {}, caller(admin))
        blocked = runs.start("started-at", {}, caller(admin))
        assert blocked.run.status == "queued"
        runs.cancel(blocked.run.id, caller(admin))
        assert wait_for(blocked.run.id, timeout=2).status == "cancelled"
        runs.cancel(queued_cancel.run.id, caller(admin))
        assert [e.outcome for e in events(blocked.run.id, "run.finished")] == ["cancelled"]


def test_the_reaper_marks_expired_leases_lost_once(engine_app, people):
    with engine_app.app_context():
        started = runs.start("long-nap", {}, caller(people["admin"]))
        # Another worker's run whose lease ran out: move it to a dead boot id in the past.
        db.session.execute(
            text("UPDATE runs SET boot_id = 'dead', lease_expires_at = :past WHERE id = :id"),
            {
                "past": dialect.database_now(db.session()) - __import__("datetime").timedelta(seconds=10),
                "id": started.run.id,
            },
        )
        db.session.commit()
        assert runs.reap_expired() == [started.run.id]
        assert runs.reap_expired() == []
        runs.cancel_local(engine_app.extensions["gateway.executor"].local_job(started.run.id))
        run = wait_for(started.run.id)
        assert run.status == "lost"
        assert [e.outcome for e in events(run.id, "run.finished")] == ["lost"]
        assert chain_ok(engine_app)


# --- cache ------------------------------------------------------------------------------------


def test_fifty_identical_requests_execute_once(engine_app, people, tmp_path):
    marker = tmp_path / "executions"
    results: list[runs.Started] = []
    errors: list[BaseException] = []
    admin_id = people["admin"].id

    def request() -> None:
        with engine_app.app_context():
            try:
                from gateway.db.models import User

                user = db.session.get(User, admin_id)
                results.append(runs.start("counted", {"path": str(marker)}, caller(user)))
            except BaseException as exc:
                errors.append(exc)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=request) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with engine_app.app_context():
        run_ids = {started.run.id for started in results}
        assert len(run_ids) == 1
        run = wait_for(run_ids.pop())
        assert run.status == "succeeded"
        assert marker.read_text().count("run") == 1
        assert len(events(run.id, "run.cache_hit")) == 49
        later = runs.start("counted", {"path": str(marker)}, caller(people["staff"] if False else people["admin"]))
        assert later.cached and not later.joined and later.run.id == run.id


def test_the_stored_cache_key_is_keyed_by_the_server_secret(engine_app, people, tmp_path):
    """runs.cache_key must not be a digest anyone can recompute from guessed params (issue 13, item 5)."""
    import hashlib
    import hmac

    path = str(tmp_path / "executions")
    with engine_app.app_context():
        run = wait_for(runs.start("counted", {"path": path}, caller(people["admin"])).run.id)
    body = json.dumps({"command": "counted", "params": {"path": path}}, sort_keys=True, default=str).encode()
    assert run.cache_key != hashlib.sha256(body).hexdigest()
    secret = engine_app.config["SECRET_KEY"].encode()
    assert run.cache_key == hmac.new(secret, b"run-cache-key\0" + body, hashlib.sha256).hexdigest()


# --- signals --------------------------------------------------------------------------------


def test_signals_carry_the_callback_context(engine_app, people):
    seen: list[tuple[str, str, object]] = []

    def on_started(sender, run, callback_context):
        seen.append(("started", run.id, callback_context))

    def on_finished(sender, run, callback_context):
        seen.append(("finished", run.status, callback_context))

    signals.run_started.connect(on_started)
    signals.run_finished.connect(on_finished)
    try:
        with engine_app.app_context():
            started = runs.start("started-at", {}, caller(people["admin"]), callback_context={"ticket": 7})
            wait_for(started.run.id)
            deadline = time.monotonic() + 5
            while len(seen) < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
    finally:
        signals.run_started.disconnect(on_started)
        signals.run_finished.disconnect(on_finished)
    assert seen == [("started", started.run.id, {"ticket": 7}), ("finished", "succeeded", {"ticket": 7})]


# --- uploads --------------------------------------------------------------------------------


def test_an_uploaded_file_reaches_argv_as_a_path_and_is_removed_after(engine_app, people, tmp_path, monkeypatch):
    import hashlib
    import io
    import os
    import tempfile

    from werkzeug.datastructures import FileStorage

    from gateway.catalogue.params import ParamError

    content = b"report data\n" * 1000

    def upload(name: str) -> FileStorage:
        return FileStorage(io.BytesIO(content), filename=name)

    with engine_app.app_context():
        files, folder = uploads.store_uploads({"upload": upload("../../etc/passwd")}, 1 << 20, None)
        assert folder is not None
        stored = files["upload"]
        assert os.path.dirname(stored.path) == folder and stored.original_name == "passwd"
        started = runs.start("checksum", {}, caller(people["admin"]), files={"upload": stored}, tempdir=folder)
        run = wait_for(started.run.id)
        digest = hashlib.sha256(content).hexdigest()
        assert run.status == "succeeded" and runs.output_text(run.id).startswith(digest)
        recorded = events(run.id, "run.started")[0].params["upload"]
        assert recorded == {"file": "passwd", "size": len(content), "sha256": digest}
        deadline = time.monotonic() + 5
        while os.path.exists(folder) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not os.path.exists(folder)

        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the refused upload's folder would stay
        with pytest.raises(ParamError) as excinfo:
            uploads.store_uploads({"upload": upload("big.bin")}, 100, None)
        assert excinfo.value.field == "upload"
        assert not [path for path in tmp_path.iterdir() if path.name.startswith("gateway-run-")]
        _, other = uploads.store_uploads({"upload": upload("small.bin")}, 1 << 20, None)
        with pytest.raises(runs.RunRejected):
            runs.start("checksum", {"upload": "/etc/passwd"}, caller(people["admin"]), tempdir=other)
        assert other is not None and not os.path.exists(other)  # refused: the folder goes at once
