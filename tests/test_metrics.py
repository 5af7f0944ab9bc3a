"""``GET /metrics``: Prometheus text under METRICS_ALLOWED_NETWORKS, fed by the real engine and requests.

Values are read back the way Prometheus does, by scraping and parsing the
text. Metrics are process-wide, so every test compares before and after.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import string
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from gateway import runs
from gateway.access import policy
from gateway.db.models import Run
from gateway.identity import accounts
from gateway.platform import metrics
from gateway.platform.extensions import db
from tests.conftest import PASSWORDS, base_environ, login_response

PROJECT = Path(__file__).resolve().parent.parent
CATALOGUE = textwrap.dedent(
    """
    commands:
      - name: ok-cmd
        title: Succeeds
        kind: shell
        argv: ["true"]
      - name: bad-cmd
        title: Fails
        kind: shell
        argv: ["false"]
    """
)


def scrape(client, remote: str = "127.0.0.1") -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", environ_base={"REMOTE_ADDR": remote})
    assert response.status_code == 200, response.status_code
    assert response.content_type.startswith("text/plain; version=")
    return parse(response.get_data(as_text=True))


def parse(body: str) -> dict[tuple[str, tuple], float]:
    samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_app(make_app, tmp_path):
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(CATALOGUE)
    return make_app(GATEWAY_COMMANDS_FILE=catalogue, METRICS_ALLOWED_NETWORKS="127.0.0.1/32,10.9.0.0/16")


def wait_terminal(run_id: str, timeout: float = 15.0) -> Run:
    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()
        run = db.session.get(Run, run_id)
        db.session.refresh(run)
        if run.status not in runs.LIVE or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def test_metrics_need_no_sign_in_and_follow_their_own_allowlist(metrics_app):
    client = metrics_app.test_client()
    samples = scrape(client, remote="10.9.1.2")  # outside ALLOWED_NETWORKS, inside METRICS_ALLOWED_NETWORKS
    assert ("gateway_audit_append_seconds_count", ()) in samples
    refused = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.2"})  # loopback, but not in the list
    assert refused.status_code == 403
    assert b"gateway_" not in refused.data
    assert "Set-Cookie" not in client.get("/metrics").headers


def test_metrics_are_not_rate_limited(make_app):
    app = make_app(LOGIN_RATE_LIMIT="1/minute", RATELIMIT_DEFAULT="1/minute")
    client = app.test_client()
    assert all(client.get("/metrics").status_code == 200 for _ in range(5))


def test_http_requests_are_counted_by_route_not_raw_path(metrics_app):
    client = metrics_app.test_client()
    before = scrape(client)
    for run_id in ("f1457e15-5ec2-4e7a-9c1d-000000000001", "5ec0d1d0-0000-4000-8000-000000000002"):
        client.get(f"/runs/{run_id}")  # not signed in: redirected to /login
    client.get("/no/such/page/abc123")
    body = client.get("/metrics").get_data(as_text=True)
    after = parse(body)
    labels = {"route": "/runs/<run_id:run_id>", "method": "GET", "status": "302"}
    assert (
        value(after, "gateway_http_requests_total", **labels) - value(before, "gateway_http_requests_total", **labels)
        == 2
    )
    assert "f1457e15" not in body and "abc123" not in body

    def unmatched(samples: dict) -> float:
        return sum(
            v
            for (name, labels), v in samples.items()
            if name == "gateway_http_requests_total" and ("route", "<unmatched>") in labels
        )

    assert unmatched(after) - unmatched(before) == 1


def series_lines(body: str) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith("#"))


def test_invented_methods_paths_and_command_names_add_a_bounded_number_of_series(metrics_app):
    """No caller-chosen string becomes a label value, from inside or outside the allowlist.

    Half the requests come from outside ALLOWED_NETWORKS (refused by the allowlist), half
    with a staff token from inside; each carries a fresh invented method, path or command
    name. Counted as Prometheus sees it: lines of the /metrics text before and after.
    """
    from tests.test_api_runs import issue_token

    with metrics_app.app_context():
        accounts.create_user("staff", PASSWORDS["staff"])
    token = issue_token(metrics_app, "staff")[1]
    client = metrics_app.test_client()
    rng = random.Random(13)
    before = client.get("/metrics").get_data(as_text=True)
    markers = []
    for i in range(300):
        marker = "Q" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=10))
        markers.append(marker)
        outside = i % 2 == 1
        environ = {"REMOTE_ADDR": "192.0.2.7" if outside else "127.0.0.1"}
        headers = {} if outside else {"Authorization": f"Bearer {token}"}
        kind = (i // 2) % 3
        if kind == 0:  # invented method on an invented path
            response = client.open(f"/{marker}/x", method=marker, headers=headers, environ_base=environ)
        elif kind == 1:  # invented method on a real route
            response = client.open("/api/v1/commands", method=marker, headers=headers, environ_base=environ)
        else:  # a command name no catalogue has
            path = f"/api/v1/commands/{marker}/runs"
            response = client.post(path, json={"params": {}}, headers=headers, environ_base=environ)
        assert response.status_code < 500, (kind, outside, response.status_code)
    body = client.get("/metrics").get_data(as_text=True)
    lowered = body.lower()
    assert not [m for m in markers if m.lower() in lowered]
    # Before: at least two lines (_total, _created) per invented method, 400+ in all. Now a
    # handful of fixed series: denied, unmatched and the runs route, each with its histogram.
    assert series_lines(body) - series_lines(before) <= 100
    after = parse(body)
    assert value(after, "gateway_http_requests_total", route="<denied>", method="other", status="403") >= 100
    assert value(after, "gateway_http_requests_total", route="<denied>", method="POST", status="403") >= 50


def test_label_sets_follow_the_engine():
    """The fixed label sets cover what the engine produces (a new run status would otherwise count as "other")."""

    assert set(runs.LIVE + runs.TERMINAL) == metrics.RUN_STATUSES
    assert {
        policy.NOT_FOUND.outcome,
        policy.NETWORK.outcome,
    } <= metrics.REJECTION_REASONS
    assert metrics.method_label("Q0000001") == metrics.method_label("get") == "other"
    assert metrics.reason_label("x" * 20) == "other"


def test_login_failures_are_counted_and_the_password_is_not_exposed(metrics_app):
    with metrics_app.app_context():
        accounts.create_user("staff", PASSWORDS["staff"])
    client = metrics_app.test_client()
    before = scrape(client)
    assert login_response(client, "staff", "wrong-password-zzz").status_code == 401
    assert login_response(client, "nobody", "wrong-password-zzz").status_code == 401
    assert login_response(client, "staff", PASSWORDS["staff"]).status_code == 302
    body = client.get("/metrics").get_data(as_text=True)
    after = parse(body)
    failures = "gateway_login_failures_total"
    assert value(after, failures, reason="rejected") - value(before, failures, reason="rejected") == 2
    assert "wrong-password-zzz" not in body and PASSWORDS["staff"] not in body


def test_runs_are_counted_timed_and_active_runs_return_to_zero(metrics_app):
    client = metrics_app.test_client()
    before = scrape(client)
    with metrics_app.app_context():
        admin = accounts.create_user("admin", PASSWORDS["admin"], is_admin=True)
        caller = runs.Caller(user=admin, source_ip="127.0.0.1", user_agent="pytest")
        ids = [runs.start(name, {}, caller).run.id for name in ("ok-cmd", "ok-cmd", "bad-cmd")]
        assert [wait_terminal(run_id).status for run_id in ids] == ["succeeded", "succeeded", "failed"]
        with pytest.raises(runs.RunRejected):
            runs.start("no-such-command", {}, caller)
    deadline = time.monotonic() + 5  # run_finished is sent just after the terminal state is committed
    while True:
        after = scrape(client)
        if value(after, "gateway_active_runs") == value(before, "gateway_active_runs") or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("gateway_runs_total", command="ok-cmd", status="succeeded") == 2
    assert delta("gateway_runs_total", command="bad-cmd", status="failed") == 1
    assert delta("gateway_runs_started_total", command="ok-cmd") == 2
    assert delta("gateway_run_duration_seconds_count", command="ok-cmd") == 2
    assert delta("gateway_active_runs") == 0
    rejected = {k: v for k, v in after.items() if k[0] == "gateway_runs_rejected_total"}
    assert sum(rejected.values()) - sum(v for k, v in before.items() if k[0] == "gateway_runs_rejected_total") == 1
    assert not any("no-such-command" in str(labels) for _, labels in rejected)
    # every run wrote run.started and run.finished; the refusal wrote run.rejected
    assert delta("gateway_audit_append_seconds_count") >= 7


def test_refusals_the_flood_cap_summarises_are_still_counted(make_app, tmp_path):
    """The ledger may summarise a flood of refusals in one row; the counter still sees each one."""
    catalogue = tmp_path / "commands.yaml"
    catalogue.write_text(CATALOGUE)
    app = make_app(GATEWAY_COMMANDS_FILE=catalogue, AUDIT_FLOOD_PER_MINUTE=1)
    client = app.test_client()
    before = scrape(client)
    with app.app_context():
        staff = accounts.create_user("staff", PASSWORDS["staff"])
        caller = runs.Caller(user=staff, source_ip="127.0.0.1", user_agent="pytest")
        for _ in range(5):
            with pytest.raises(runs.RunRejected):
                runs.start("no-such-command", {}, caller)
        recorded = db.session.scalar(text("SELECT COUNT(*) FROM audit_events WHERE event = 'run.rejected'"))
    after = scrape(client)
    assert recorded < 5  # the flood cap left some out of the ledger ...
    counted = value(after, "gateway_runs_rejected_total", reason="not_found") - value(
        before, "gateway_runs_rejected_total", reason="not_found"
    )
    assert counted == 5  # ... but not out of the counter


@pytest.mark.both_engines  # the ledger's verification, per engine
def test_audit_chain_gauge_follows_verification(metrics_app, backend):
    from gateway.audit.status import verify_and_record

    client = metrics_app.test_client()
    with metrics_app.app_context():
        for _ in range(2):
            login_response(client, "ghost", "nope-nope-nope")  # each writes auth.login_failed
        assert verify_and_record().ok
        assert value(scrape(client), "gateway_audit_chain_ok") == 1
        assert value(scrape(client), "gateway_audit_chain_verified_timestamp_seconds") > time.time() - 60
        with db.engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_events WHERE seq = 1"))  # updates are refused by a trigger
        assert not verify_and_record().ok
    assert value(scrape(client), "gateway_audit_chain_ok") == 0


# --- multiprocess mode under gunicorn ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_gunicorn_workers_are_summed_in_multiprocess_mode(database_url, tmp_path):
    multiproc = tmp_path / "prom"
    multiproc.mkdir()
    (tmp_path / "app_under_test.py").write_text("from gateway import create_app\n\napp = create_app()\n")
    (tmp_path / "gunicorn_test.py").write_text(
        "from gateway.platform.metrics import mark_worker_dead\n"
        "def child_exit(server, worker):\n    mark_worker_dead(worker.pid)\n"
    )
    port = free_port()
    env = {
        **os.environ,
        **base_environ(database_url, GATEWAY_INSTANCE_PATH=str(tmp_path / "instance")),
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{PROJECT}",
    }
    command = [
        sys.executable, "-m", "gunicorn", "-c", str(tmp_path / "gunicorn_test.py"), "-w", "2", "--threads", "2",
        "-b", f"127.0.0.1:{port}", "app_under_test:app",
    ]  # fmt: skip
    server = subprocess.Popen(command, cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                # /readyz, not /livez: a probe that timed out here may still be served (and counted) later.
                urllib.request.urlopen(base + "/readyz", timeout=2).read()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stderr.read().decode()
                time.sleep(0.2)
        for _ in range(10):
            urllib.request.urlopen(base + "/livez", timeout=5).read()
        served = [int(path.stem.split("_")[-1]) for path in multiproc.glob("counter_*.db")]
        assert served, "in multiprocess mode each worker keeps its values in a file of its own"
        assert (multiproc / f"gauge_livesum_{served[0]}.db").exists()  # gateway_active_runs of that worker
        os.kill(served[0], signal.SIGKILL)  # its counts must survive it; its live gauges must not
        deadline = time.monotonic() + 30
        while list(multiproc.glob(f"gauge_livesum_{served[0]}.db")):
            assert time.monotonic() < deadline, "child_exit did not mark the dead worker"
            time.sleep(0.1)
        for _ in range(10):
            urllib.request.urlopen(base + "/livez", timeout=5).read()
        assert len(list(multiproc.glob("counter_*.db"))) >= 2
        samples = parse(urllib.request.urlopen(base + "/metrics", timeout=5).read().decode())
        counted = value(samples, "gateway_http_requests_total", route="/livez", method="GET", status="200")
        assert counted == 20  # summed over the dead and the living workers
    finally:
        server.terminate()
        server.wait(timeout=30)
