"""Prometheus metrics: ``GET /metrics`` on the ``health`` blueprint (endpoint ``health.metrics``).

The endpoint name matters: the network allowlist serves it under
``METRICS_ALLOWED_NETWORKS`` and the sign-in gate lets it through without a
session; the health blueprint is exempt from rate limits.

Under gunicorn every worker is its own process, so when
``PROMETHEUS_MULTIPROC_DIR`` is set (before the first import of
``prometheus_client``) the values live in files in that directory and a scrape
of any worker sums them. gunicorn's ``child_exit`` hook must then call
``mark_worker_dead(worker.pid)`` so a dead worker's live gauges disappear.

What is measured, and where it comes from:
- runs started/finished: the ``run_started``/``run_finished`` signals;
- HTTP requests and sign-in failures: an ``after_request`` hook (by URL rule, never the raw path);
- refused runs (by reason): the ``run_rejected`` signal;
- audit append latency: the ledger's ``audit_appended`` signal;
- deliveries: ``gateway_delivery_attempts_total`` by destination and result, by the worker's
  ``delivery_attempted`` signal;
- schedules: ``gateway_schedule_lag_seconds`` (start minus scheduled time) and
  ``gateway_schedule_missed_total`` by the scheduler's signals; the last success per schedule
  read at scrape time (``schedule_successes``, from the database: the same on every replica);
- ``gateway_audit_chain_ok`` and ``gateway_audit_chain_verified_timestamp_seconds``: read at
  scrape time from the newest ``audit.verified`` event through the reader ``create_app`` hands
  to ``init_app`` (``gateway.audit.status.latest``), so every replica and worker reports the
  scheduled verification, not only the process that ran it;
- ``gateway_audit_forward_lag_events{destination}``: ledger events each configured audit
  forwarding destination has not acknowledged yet, read at scrape time from its cursor
  (``gateway.audit.forwarding.lag_by_destination``); the label is an ``AUDIT_FORWARD`` name.

This module imports no domain package: what it measures comes by signal or by callback.

Every label value passes through the ``*_label`` functions below and comes from a
fixed set: a caller-chosen string (a method, a path, a command name, a reason)
never becomes a label value, so no client can grow the number of series.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from gateway.platform import signals

RUN_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
APPEND_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
UNMATCHED_ROUTE = "<unmatched>"
DENIED_ROUTE = "<denied>"
OTHER = "other"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
RUN_STATUSES = frozenset(
    {"queued", "running", "succeeded", "failed", "timed_out", "cancelled", "lost", "denied", "expired", "withdrawn"}
)
# The audit outcomes of ``run.rejected`` (policy refusals and ``runs._reject``); anything else counts as "other".
REJECTION_REASONS = frozenset(
    {
        "not_found", "denied_network", "draining", "unavailable", "invalid_params", "invalid_request",
        "ratelimit_unavailable", "rate_limited", "disabled", "concurrency_full",
    }
)  # fmt: skip
LOGIN_FAILURE_REASONS = {401: "rejected", 429: "rate_limited"}

RUNS = Counter(
    "gateway_runs_total", "Runs that reached a terminal state, by command and status.", ["command", "status"]
)
RUNS_STARTED = Counter("gateway_runs_started_total", "Runs accepted and started, by command.", ["command"])
RUN_DURATION = Histogram(
    "gateway_run_duration_seconds", "Wall time of finished runs.", ["command"], buckets=RUN_BUCKETS
)
ACTIVE_RUNS = Gauge(
    "gateway_active_runs", "Runs started by this process and not finished yet.", multiprocess_mode="livesum"
)
REJECTED_RUNS = Counter("gateway_runs_rejected_total", "Run requests refused, by reason (audit outcome).", ["reason"])
LOGIN_FAILURES = Counter("gateway_login_failures_total", "Failed sign-ins, by reason.", ["reason"])
AUDIT_APPEND = Histogram(
    "gateway_audit_append_seconds", "Time to append one audit event (chain lock included).", buckets=APPEND_BUCKETS
)
HTTP_REQUESTS = Counter(
    "gateway_http_requests_total",
    "HTTP requests by route (URL rule), method and status.",
    ["route", "method", "status"],
)
SCHEDULE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
SCHEDULE_LAG = Histogram(
    "gateway_schedule_lag_seconds", "Start of a scheduled run minus its scheduled time.", ["schedule"],
    buckets=SCHEDULE_BUCKETS,
)  # fmt: skip
SCHEDULE_MISSED = Counter(
    "gateway_schedule_missed_total", "Occurrences not run because they were past the misfire grace.", ["schedule"]
)
DELIVERY_ATTEMPTS = Counter(
    "gateway_delivery_attempts_total",
    "Notification delivery attempts, by destination (catalogue name) and result (delivered or the failure's reason).",
    ["destination", "result"],
)
# The deliveries' results (gateway.deliveries.RESULTS, asserted equal by the tests): anything else counts as "other".
DELIVERY_RESULTS = frozenset(
    {
        "delivered", "timeout", "tls", "connect", "protocol", "redirect", "status", "url", "starttls", "auth",
        "rejected", "unconfigured", "internal",
    }
)  # fmt: skip
HTTP_DURATION = Histogram(
    "gateway_http_request_duration_seconds", "Time to the response headers, by route.", ["route"], buckets=HTTP_BUCKETS
)
# Runs this process counted as active: only those are decremented (the reaper may finish another replica's run).
_active_ids: set[str] = set()
_active_lock = threading.Lock()


def _drop_platform_collector() -> None:
    """python_info tells a scraper the interpreter version: nothing a probe should reveal."""
    from prometheus_client import PLATFORM_COLLECTOR

    with contextlib.suppress(KeyError):
        REGISTRY.unregister(PLATFORM_COLLECTOR)


_drop_platform_collector()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class ChainVerification(Protocol):
    """What the chain gauges show: the last recorded verification's result and when it was recorded."""

    @property
    def ok(self) -> bool: ...

    @property
    def at(self) -> float: ...  # Unix time


ChainStatusReader = Callable[[], ChainVerification | None]
ScheduleSuccessReader = Callable[[], dict[str, float]]  # schedule name -> Unix time of its newest success
ForwardLagReader = Callable[[], dict[str, float]]  # configured destination -> events not yet acknowledged
_CHAIN_STATUS = "gateway.metrics.chain_status"
_SCHEDULE_SUCCESSES = "gateway.metrics.schedule_successes"
_FORWARD_LAG = "gateway.metrics.forward_lag"


class ForwardLagCollector:
    """``gateway_audit_forward_lag_events``, read from the forwarding cursors at scrape time."""

    def __init__(self, read: ForwardLagReader):
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lags = self.read()
        if not lags:
            return
        family = GaugeMetricFamily(
            "gateway_audit_forward_lag_events",
            "Ledger events an audit forwarding destination has not acknowledged yet.",
            labels=["destination"],
        )
        for name, lag in sorted(lags.items()):
            family.add_metric([destination_label(name)], lag)
        yield family


class ScheduleCollector:
    """``gateway_schedule_last_success_timestamp_seconds``, read from the database at scrape time."""

    def __init__(self, read: ScheduleSuccessReader):
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "gateway_schedule_last_success_timestamp_seconds",
            "When the newest successful run of each schedule finished (Unix time).",
            labels=["schedule"],
        )
        for name, at in sorted(self.read().items()):
            family.add_metric([schedule_label(name)], at)
        yield family


class ChainCollector:
    """The audit chain gauges, computed at scrape time from the ledger (cached there a few seconds).

    Not kept in gauge files: the value is the same for every process, it comes
    from the last recorded verification, and none is shown until one exists.
    """

    def __init__(self, read: ChainStatusReader):
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        last = self.read()
        if last is None:
            return
        yield GaugeMetricFamily(
            "gateway_audit_chain_ok",
            "1 when the last recorded audit chain verification passed, 0 when it failed.",
            value=1 if last.ok else 0,
        )
        yield GaugeMetricFamily(
            "gateway_audit_chain_verified_timestamp_seconds",
            "When the last audit chain verification was recorded (Unix time).",
            value=last.at,
        )


def render() -> bytes:
    """The exposition text: all workers' values in multiprocess mode, this process's otherwise."""
    chain = CollectorRegistry()
    chain.register(ChainCollector(current_app.extensions[_CHAIN_STATUS]))
    successes = current_app.extensions.get(_SCHEDULE_SUCCESSES)
    if successes is not None:
        chain.register(ScheduleCollector(successes))
    forward_lag = current_app.extensions.get(_FORWARD_LAG)
    if forward_lag is not None:
        chain.register(ForwardLagCollector(forward_lag))
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry) + generate_latest(chain)
    return generate_latest(REGISTRY) + generate_latest(chain)


def metrics() -> Response:
    response = Response(render(), mimetype=None, content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def mark_worker_dead(pid: int) -> None:
    """For gunicorn's ``child_exit`` hook: drop a dead worker's live gauges (multiprocess mode only)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)


# --- label values: the one place a value becomes a label ------------------------------------


def method_label(method: str) -> str:
    """A standard HTTP method as itself, anything a client invents as ``other``."""
    return method if method in METHODS else OTHER


def route_label() -> str:
    """The URL rule (never the raw path); ``<denied>`` when the allowlist refused, ``<unmatched>`` for no rule."""
    if g.get("network_denied"):
        return DENIED_ROUTE
    return request.url_rule.rule if request.url_rule is not None else UNMATCHED_ROUTE


def status_label(code: int) -> str:
    """The response code the application chose; one outside the HTTP range (never expected) as ``other``."""
    return str(code) if 100 <= code <= 599 else OTHER


def run_status_label(status: str) -> str:
    return status if status in RUN_STATUSES else OTHER


def command_label(name: str) -> str:
    """A run's command: runs exist only for catalogue commands (``runs.start`` refuses others before a row)."""
    return name


def schedule_label(name: str) -> str:
    """A schedule's name: schedules come from the reviewed catalogue (the reader reports loaded ones only)."""
    return name


def destination_label(name: str | None) -> str:
    """A configured destination: a notification of the loaded catalogue (the delivery worker passes None for
    any other), or an ``AUDIT_FORWARD`` name (the lag reader reports configured ones only)."""
    return name if name is not None else OTHER


def delivery_result_label(result: object) -> str:
    return result if isinstance(result, str) and result in DELIVERY_RESULTS else OTHER


def reason_label(outcome: object) -> str:
    return outcome if isinstance(outcome, str) and outcome in REJECTION_REASONS else OTHER


# --- engine hooks ---------------------------------------------------------------------------


def _run_started(sender: Any, run: Any = None, **_: Any) -> None:
    if run is None:
        return
    RUNS_STARTED.labels(command=command_label(run.command)).inc()
    with _active_lock:
        if run.id in _active_ids:
            return
        _active_ids.add(run.id)
    ACTIVE_RUNS.inc()


def _run_finished(sender: Any, run: Any = None, **_: Any) -> None:
    if run is None:
        return
    command = command_label(run.command)
    RUNS.labels(command=command, status=run_status_label(run.status)).inc()
    if run.duration_ms is not None:
        RUN_DURATION.labels(command=command).observe(run.duration_ms / 1000)
    with _active_lock:
        if run.id not in _active_ids:
            return
        _active_ids.discard(run.id)
    ACTIVE_RUNS.dec()


def _run_rejected(sender: Any, outcome: object = None, **_: Any) -> None:
    """Every refusal counts, also those the flood cap summarised instead of recording one by one."""
    REJECTED_RUNS.labels(reason=reason_label(outcome)).inc()


def _audit_appended(sender: Any, seconds: float = 0.0, **_: Any) -> None:
    AUDIT_APPEND.observe(seconds)


def _schedule_started(sender: Any, schedule: str = "", lag: float = 0.0, **_: Any) -> None:
    SCHEDULE_LAG.labels(schedule=schedule_label(schedule)).observe(max(0.0, lag))


def _schedule_missed(sender: Any, schedule: str = "", count: int = 0, **_: Any) -> None:
    SCHEDULE_MISSED.labels(schedule=schedule_label(schedule)).inc(count)


def _delivery_attempted(sender: Any, destination: str | None = None, result: object = None, **_: Any) -> None:
    DELIVERY_ATTEMPTS.labels(destination=destination_label(destination), result=delivery_result_label(result)).inc()


# --- request hooks --------------------------------------------------------------------------


def _request_started() -> None:
    g.metrics_started = time.perf_counter()


def _request_finished(response: Response) -> Response:
    route = route_label()
    method = method_label(request.method)
    HTTP_REQUESTS.labels(route=route, method=method, status=status_label(response.status_code)).inc()
    started = g.get("metrics_started")
    if started is not None:
        HTTP_DURATION.labels(route=route).observe(time.perf_counter() - started)
    if request.endpoint == "auth.login" and request.method == "POST":
        reason = LOGIN_FAILURE_REASONS.get(response.status_code)
        if reason:
            LOGIN_FAILURES.labels(reason=reason).inc()
    return response


def init_app(
    app: Flask,
    *,
    chain_status: ChainStatusReader,
    schedule_successes: ScheduleSuccessReader | None = None,
    forward_lag: ForwardLagReader | None = None,
) -> None:
    """Register ``/metrics`` on the health blueprint's endpoint name, the request hooks and the signals.

    ``chain_status`` reads the last recorded audit chain verification (``gateway.audit.status.latest``);
    ``schedule_successes`` each loaded schedule's newest success (``gateway.schedules.last_successes``);
    ``forward_lag`` each audit forwarding destination's lag (``gateway.audit.forwarding.lag_by_destination``).
    """
    app.extensions[_CHAIN_STATUS] = chain_status
    app.extensions[_SCHEDULE_SUCCESSES] = schedule_successes
    app.extensions[_FORWARD_LAG] = forward_lag
    app.add_url_rule("/metrics", endpoint="health.metrics", view_func=metrics)
    app.before_request(_request_started)
    app.after_request(_request_finished)
    signals.run_started.connect(_run_started, weak=False)
    signals.run_finished.connect(_run_finished, weak=False)
    signals.run_rejected.connect(_run_rejected, weak=False)
    signals.audit_appended.connect(_audit_appended, weak=False)
    signals.schedule_started.connect(_schedule_started, weak=False)
    signals.schedule_missed.connect(_schedule_missed, weak=False)
    signals.delivery_attempted.connect(_delivery_attempted, weak=False)
