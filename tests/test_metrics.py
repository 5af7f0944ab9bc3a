"""``GET /metrics``: Prometheus text under METRICS_ALLOWED_NETWORKS, fed by the real engine and requests.

Values are read back the way Prometheus does, by scraping and parsing the
text. Metrics are process-wide, so every test compares before and after.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from gateway import accounts, runs
from gateway.extensions import db
from gateway.models import Run
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


def test_audit_chain_gauge_follows_verification(metrics_app, backend):
    from gateway.metrics import verify_and_record

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
        "from gateway.metrics import mark_worker_dead\n"
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
