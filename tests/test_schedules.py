"""Schedules: the catalogue's ``schedules:``, cron through DST, and occurrences run exactly once.

The calendar cases use ``Schedule.occurrences`` on fixed instants; the scheduler
tests drive ``Scheduler.tick`` with an injectable clock on real databases, and
race two schedulers (two apps: two replicas) for the same occurrences.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.catalogue import CatalogueError, Schedule, parse_catalogue
from gateway.catalogue.switches import holder
from gateway.db.models import AuditEvent, Run, ScheduleOccurrence
from gateway.identity import accounts, groups, tokens
from gateway.platform.extensions import db
from gateway.platform.timeutil import as_utc
from gateway.schedules import Scheduler, set_paused
from tests.conftest import csrf_token_from, seed_session
from tests.faultkit import wait_until

COMMANDS = """
datasources: {}
commands:
  - name: hello
    title: Hello
    kind: shell
    argv: ["echo", "{greeting}"]
    params:
      greeting: {type: choice, choices: [hi, ho], default: hi}
      token: {type: string, secret: true}
    env: {TOKEN: "{token}"}
"""
SCHEDULES = """
schedules:
  - name: every-5
    command: hello
    params: {greeting: ho}
    cron: "*/5 * * * *"
    timezone: Europe/Berlin
"""
T0 = datetime(2026, 12, 7, 10, 0, 30, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def schedule(cron: str, timezone: str = "Europe/Berlin") -> Schedule:
    return Schedule(name="s", command="hello", cron=cron, timezone=timezone)


def take(cron: str, after: datetime, count: int, timezone: str = "Europe/Berlin") -> list[datetime]:
    return list(islice(schedule(cron, timezone).occurrences(after), count))


# --- the catalogue ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"command": "nope"}, "schedule 'bad' field command: unknown command 'nope'"),
        ({"params": {"greeting": "hey"}}, "schedule 'bad' field params.greeting:"),
        ({"params": {"colour": "red"}}, "schedule 'bad' field params.colour:"),
        ({"params": {"token": "s3cret"}}, "schedule 'bad' field params.token: a secret parameter cannot"),
        ({"cron": "61 * * * *"}, "schedule 'bad' field cron: not a valid cron expression"),
        ({"cron": "* * * *"}, "schedule 'bad' field cron: needs 5 fields"),
        ({"timezone": "Mars/Olympus"}, "schedule 'bad' field timezone: unknown time zone 'Mars/Olympus'"),
        ({"notify": ["ops-webhook"]}, "schedule 'bad' field notify: unknown notification 'ops-webhook'"),
        ({"every": "5m"}, "schedule 'bad' field every:"),
    ],
)
def test_a_bad_schedule_refuses_the_catalogue_naming_schedule_and_field(entry, expected):
    fields = {"name": "bad", "command": "hello", "cron": "*/5 * * * *", **entry}
    text = COMMANDS + "schedules:\n  - " + "\n    ".join(f"{k}: {v!r}" for k, v in fields.items()).replace("'", '"')
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(text.replace('"', "'") if "{" in str(entry) else text)
    assert expected in str(caught.value)


def test_a_valid_schedule_is_loaded_with_utc_as_the_default_zone():
    catalogue = parse_catalogue(COMMANDS + SCHEDULES + '  - {name: daily, command: hello, cron: "0 6 * * *"}\n')
    assert sorted(catalogue.schedules) == ["daily", "every-5"]
    assert catalogue.schedules["daily"].timezone == "UTC"
    assert catalogue.schedules["every-5"].params == {"greeting": "ho"}


# --- the calendar (Debian cron's rules, through cronsim) -------------------------------------


def test_a_fixed_time_in_the_spring_forward_gap_runs_once_right_after_it():
    # 2026-03-29 02:00 Berlin jumps to 03:00: 02:30 does not exist that day.
    assert take("30 2 * * *", utc(2026, 3, 28, 12, 0), 3) == [
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST, right after the gap
        utc(2026, 3, 30, 0, 30),  # 02:30 CEST
        utc(2026, 3, 31, 0, 30),
    ]


def test_a_fixed_time_in_the_repeated_fall_back_hour_runs_once_on_the_first_pass():
    # 2026-10-25 03:00 CEST goes back to 02:00 CET: 02:30 happens twice.
    assert take("30 2 * * *", utc(2026, 10, 24, 12, 0), 3) == [
        utc(2026, 10, 25, 0, 30),  # 02:30 CEST, the first pass only
        utc(2026, 10, 26, 1, 30),  # 02:30 CET
        utc(2026, 10, 27, 1, 30),
    ]


@pytest.mark.parametrize("after", [utc(2026, 3, 29, 0, 30), utc(2026, 10, 25, 0, 30)], ids=["spring", "autumn"])
def test_a_step_expression_follows_real_time_through_both_transitions(after):
    instants = take("*/5 * * * *", after, 24)
    assert instants[0] == after + timedelta(minutes=5)
    assert all(later - earlier == timedelta(minutes=5) for earlier, later in pairwise(instants))
    assert len(set(instants)) == len(instants)


def test_month_ends_skip_months_without_the_day():
    assert take("0 0 31 * *", utc(2027, 1, 1, 0, 0), 4, "UTC") == [
        utc(2027, 1, 31, 0, 0), utc(2027, 3, 31, 0, 0), utc(2027, 5, 31, 0, 0), utc(2027, 7, 31, 0, 0),
    ]  # fmt: skip
    assert take("0 12 29 2 *", utc(2027, 1, 1, 0, 0), 1, "UTC") == [utc(2028, 2, 29, 12, 0)]


def test_every_seventh_minute_restarts_each_hour():
    minutes = [at.minute for at in take("*/7 * * * *", utc(2026, 12, 7, 9, 59), 10, "UTC")]
    assert minutes == [0, 7, 14, 21, 28, 35, 42, 49, 56, 0]


# --- the scheduler ----------------------------------------------------------------------------


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def catalogue_path(tmp_path: Path) -> Path:
    path = tmp_path / "commands.yaml"
    path.write_text(COMMANDS + SCHEDULES)
    return path


@pytest.fixture
def sched_app(make_app, catalogue_path):
    return make_app(GATEWAY_COMMANDS_FILE=catalogue_path)


def scheduled_runs(app) -> list[Run]:
    with app.app_context():
        return list(db.session.scalars(select(Run).where(Run.username == "system:scheduler").order_by(Run.created_at)))


def events(app, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.event == name).order_by(AuditEvent.seq)))


def tick(app, scheduler: Scheduler, at: datetime) -> datetime | None:
    scheduler.clock = Clock(at)
    with app.app_context():
        try:
            return scheduler.tick()
        finally:
            db.session.remove()


def test_a_due_occurrence_runs_once_as_the_scheduler_with_no_address(sched_app):
    scheduler = Scheduler(sched_app)
    first_due = tick(sched_app, scheduler, T0)  # first seen: counts from now, nothing before
    assert first_due == utc(2026, 12, 7, 10, 5)
    assert scheduled_runs(sched_app) == []
    tick(sched_app, scheduler, utc(2026, 12, 7, 10, 5, 2))
    tick(sched_app, scheduler, utc(2026, 12, 7, 10, 5, 3))
    [run] = scheduled_runs(sched_app)
    assert (run.command, run.user_id, run.username, run.source_ip, run.cache_key is None) == (
        "hello", None, "system:scheduler", None, True,
    )  # fmt: skip
    assert run.params["greeting"] == "ho"
    [started] = [event for event in events(sched_app, "run.started") if event.run_id == run.id]
    assert started.actor_id is None and started.actor_name == "system:scheduler"
    assert started.detail["schedule"] == "every-5"
    assert started.detail["scheduled_for"] == "2026-12-07T10:05:00+00:00"


def test_missed_occurrences_are_recorded_once_per_gap_and_not_replayed(sched_app):
    scheduler = Scheduler(sched_app)  # grace 300 s
    tick(sched_app, scheduler, T0)
    tick(sched_app, scheduler, utc(2026, 12, 7, 10, 59, 50))  # 10:05 .. 10:55 due; 10:55 within the grace
    tick(sched_app, scheduler, utc(2026, 12, 7, 11, 0, 20))
    [missed] = events(sched_app, "schedule.missed")
    assert missed.detail == {
        "schedule": "every-5", "count": 10, "first": "2026-12-07T10:05:00+00:00", "last": "2026-12-07T10:50:00+00:00",
    }  # fmt: skip
    assert len(scheduled_runs(sched_app)) == 2  # 10:55 and 11:00


def test_pruning_runs_drops_old_claims_but_keeps_each_schedules_cursor(sched_app):
    """After ``runs prune`` the scheduler carries on from its newest claim: nothing replayed, nothing missed."""
    from gateway import runs, schedules

    scheduler = Scheduler(sched_app)
    tick(sched_app, scheduler, T0)
    for minute in (5, 10, 15):
        tick(sched_app, scheduler, utc(2026, 12, 7, 10, minute, 1))
    with sched_app.app_context():
        schedules.run_now("every-5", "operator")  # an operator's mark, outside the calendar
        db.session.remove()
        live = select(func.count()).select_from(Run).where(Run.status.in_(runs.LIVE))
        assert wait_until(lambda: db.session.rollback() is None and db.session.scalar(live) == 0)
        runs.prune(datetime.now(UTC) + timedelta(minutes=1))  # every finished run is older than this
        kept = db.session.execute(select(ScheduleOccurrence.scheduled_for, ScheduleOccurrence.outcome)).all()
        [pruned] = [e for e in db.session.scalars(select(AuditEvent).where(AuditEvent.event == "runs.pruned"))]
    assert [(as_utc(at), outcome) for at, outcome in kept] == [(utc(2026, 12, 7, 10, 15), "started")]
    assert pruned.detail["occurrences"] == 3
    tick(sched_app, scheduler, utc(2026, 12, 7, 10, 20, 1))
    assert events(sched_app, "schedule.missed") == []
    assert [run.params["greeting"] for run in scheduled_runs(sched_app)] == ["ho"]  # 10:20 only; the rest pruned


def test_a_paused_schedule_writes_nothing_per_occurrence_and_resumes_from_now(sched_app):
    scheduler = Scheduler(sched_app)
    tick(sched_app, scheduler, T0)
    with sched_app.app_context():
        assert set_paused("every-5", True, actor={"id": None, "name": "operator"})
        assert not set_paused("every-5", True, actor={"id": None, "name": "operator"})
    tick(sched_app, scheduler, utc(2026, 12, 7, 10, 5, 1))
    tick(sched_app, scheduler, utc(2026, 12, 7, 12, 0, 1))
    assert scheduled_runs(sched_app) == [] and events(sched_app, "schedule.missed") == []
    with sched_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ScheduleOccurrence)) == 0
        assert set_paused("every-5", False, actor={"id": None, "name": "operator"})
    assert [e.detail["schedule"] for e in events(sched_app, "admin.schedule_paused")] == ["every-5"]
    assert len(events(sched_app, "admin.schedule_resumed")) == 1
    tick(sched_app, scheduler, datetime.now(UTC) + timedelta(minutes=5))  # resumed now: the paused hours are gone
    assert len(scheduled_runs(sched_app)) == 1 and events(sched_app, "schedule.missed") == []


def test_a_catalogue_reload_that_removes_a_schedule_stops_it(sched_app, catalogue_path):
    scheduler = Scheduler(sched_app)
    tick(sched_app, scheduler, T0)
    catalogue_path.write_text(COMMANDS)
    holder(sched_app).reload()
    assert tick(sched_app, scheduler, utc(2026, 12, 7, 10, 5, 1)) is None
    assert scheduled_runs(sched_app) == []
    catalogue_path.write_text(COMMANDS + SCHEDULES)  # back an hour later: it starts afresh, nothing missed
    holder(sched_app).reload()
    tick(sched_app, scheduler, utc(2026, 12, 7, 11, 2, 0))
    tick(sched_app, scheduler, utc(2026, 12, 7, 11, 5, 1))
    assert events(sched_app, "schedule.missed") == [] and len(scheduled_runs(sched_app)) == 1


@pytest.mark.both_engines
def test_two_replicas_racing_run_each_occurrence_once(make_app, catalogue_path):
    apps = [make_app(GATEWAY_COMMANDS_FILE=catalogue_path) for _ in range(2)]
    schedulers = [Scheduler(app) for app in apps]
    tick(apps[0], schedulers[0], T0)
    for step in range(1, 4):
        at = T0 + timedelta(minutes=5 * step)
        barrier = threading.Barrier(4)

        def race(index: int, at: datetime = at, barrier: threading.Barrier = barrier) -> None:
            app = apps[index % 2]
            scheduler = Scheduler(app)  # two schedulers per replica as well: threads of one process
            scheduler.clock = Clock(at)
            barrier.wait()
            with app.app_context():
                scheduler.tick()
                db.session.remove()

        threads = [threading.Thread(target=race, args=(index,)) for index in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    runs = scheduled_runs(apps[0])
    assert len(runs) == 3
    started = [e for e in events(apps[0], "run.started") if e.actor_name == "system:scheduler"]
    assert sorted(e.detail["scheduled_for"] for e in started) == [
        "2026-12-07T10:05:00+00:00", "2026-12-07T10:10:00+00:00", "2026-12-07T10:15:00+00:00",
    ]  # fmt: skip


def test_scheduled_runs_are_in_nobodys_my_runs_and_visible_to_who_may_use_the_command(sched_app):
    scheduler = Scheduler(sched_app)
    tick(sched_app, scheduler, T0)
    tick(sched_app, scheduler, utc(2026, 12, 7, 10, 5, 1))
    [run] = scheduled_runs(sched_app)
    with sched_app.app_context():
        for name in ("staff", "outsider"):
            accounts.create_user(name, f"{name}-password-123")
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        groups.add_grant("ops", "hello")
        headers = {
            name: {"Authorization": f"Bearer {tokens.create_token(accounts.get_user(name)).secret}"}
            for name in ("staff", "outsider")
        }
    client = sched_app.test_client()
    listed = client.get("/api/v1/runs", headers=headers["staff"]).get_json()
    assert [item["id"] for item in listed["items"]] == []
    assert client.get(f"/api/v1/runs/{run.id}", headers=headers["staff"]).status_code == 200
    assert client.get(f"/api/v1/runs/{run.id}", headers=headers["outsider"]).status_code == 404


# --- the status board -------------------------------------------------------------------------

BOARD = """
  - name: board-5
    command: hello
    params: {greeting: hi}
    cron: "*/5 * * * *"
    dashboard: true
"""


@pytest.fixture
def board_app(make_app, tmp_path):
    path = tmp_path / "board.yaml"
    path.write_text(COMMANDS.replace("title: Hello", "title: Hello\n    dashboard: true\n    cache_seconds: 60")
                    .replace("      token: {type: string, secret: true}\n", "").replace('    env: {TOKEN: "{token}"}\n', "")
                    + "  - name: manual\n    title: Manual report\n    kind: shell\n    argv: [echo, manual]\n"
                    + "    dashboard: true\n" + "schedules:" + BOARD)  # fmt: skip
    return make_app(GATEWAY_COMMANDS_FILE=path)


def signed_in(app, user_id: int):
    client = app.test_client()
    seed_session(app, client, user_id)
    return client


def all_runs(app) -> list[Run]:
    with app.app_context():
        return list(db.session.scalars(select(Run)))


def test_the_board_shows_the_schedules_result_and_viewing_it_runs_nothing(board_app, users):
    scheduler = Scheduler(board_app)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    due = now - timedelta(minutes=now.minute % 5)
    tick(board_app, scheduler, due - timedelta(minutes=4))
    tick(board_app, scheduler, due + timedelta(seconds=1))  # one due occurrence, run at once
    [run] = all_runs(board_app)
    client = signed_in(board_app, users["staff"].id)
    with board_app.app_context():
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        groups.add_grant("ops", "hello")
        groups.add_grant("ops", "manual")
    page = client.get("/")
    html = page.get_data(as_text=True)
    assert 'id="tile-schedule-board-5"' in html and 'id="tile-manual"' in html
    assert "Run now" in html and "Refresh now" in html and "No result yet" in html  # the manual tile
    board = client.get("/tiles", headers={"X-Gateway-Background": "1"})
    assert board.status_code == 200 and board.headers["ETag"]
    again = client.get("/tiles", headers={"X-Gateway-Background": "1", "If-None-Match": board.headers["ETag"]})
    assert again.status_code == 304 and again.get_data() == b""
    assert [r.id for r in all_runs(board_app)] == [run.id]  # looking started nothing
    assert "as of" in board.get_data(as_text=True).split('id="tile-manual"')[0]  # the schedule's result
    # pressing "Run now" is the viewer's explicit run: the board changes, so does its ETag
    csrf = csrf_token_from(html)
    assert client.post("/tiles/manual/refresh", data={"csrf_token": csrf}).status_code == 303
    changed = client.get("/tiles", headers={"If-None-Match": board.headers["ETag"]})
    assert changed.status_code == 200 and changed.headers["ETag"] != board.headers["ETag"]
    assert "No result yet" not in changed.get_data(as_text=True)


def test_a_finished_results_lines_are_remembered_per_run_and_the_oldest_forgotten():
    from gateway.web.tiles import _FinishedLines

    remembered = _FinishedLines(2)
    remembered.put("run-a", ["a"])
    remembered.put("run-b", ["b"])
    assert remembered.get("run-a") == ["a"]  # shown again: now the most recent
    remembered.put("run-c", ["c"])
    assert (remembered.get("run-a"), remembered.get("run-b"), remembered.get("run-c")) == (["a"], None, ["c"])


def test_refresh_now_is_the_viewers_run_and_reuses_a_fresh_cached_result(board_app, users):
    client = signed_in(board_app, users["staff"].id)
    with board_app.app_context():
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        groups.add_grant("ops", "hello")
    csrf = csrf_token_from(client.get("/").get_data(as_text=True))
    assert client.post("/schedules/board-5/refresh", data={"csrf_token": csrf}).status_code == 303
    assert client.post("/schedules/board-5/refresh", data={"csrf_token": csrf}).status_code == 303
    [run] = all_runs(board_app)  # the second press reused the first result (cache_seconds)
    assert run.username == "staff" and run.params == {"greeting": "hi"}
    html = client.get("/tiles").get_data(as_text=True)
    assert "showing your own refresh" in html and "Stale" not in html
    assert client.post("/schedules/every-5/refresh", data={"csrf_token": csrf}).status_code == 404
    assert client.post("/schedules/nope/refresh", data={"csrf_token": csrf}).status_code == 404


# --- admin, API and CLI -----------------------------------------------------------------------


def test_admin_page_lists_schedules_and_pauses_them_audited(sched_app, users):
    scheduler = Scheduler(sched_app)
    tick(sched_app, scheduler, T0)
    tick(sched_app, scheduler, utc(2026, 12, 7, 10, 5, 1))
    admin = signed_in(sched_app, users["admin"].id)
    html = admin.get("/admin/schedules").get_data(as_text=True)
    row = html.split('id="schedule-every-5"')[1].split("</tr>")[0]
    assert "*/5 * * * *" in row and "Europe/Berlin" in row and "Pause" in row
    assert "2026-12-07 10:05" in row  # the last occurrence
    csrf = csrf_token_from(html)
    assert admin.post("/admin/schedules/every-5/pause", data={"csrf_token": csrf}).status_code == 303
    assert "Resume" in admin.get("/admin/schedules").get_data(as_text=True)
    [paused] = events(sched_app, "admin.schedule_paused")
    assert paused.actor_name == "admin" and paused.source_ip == "127.0.0.1"
    assert admin.post("/admin/schedules/nope/pause", data={"csrf_token": csrf}).status_code == 404
    staff = signed_in(sched_app, users["staff"].id)
    assert staff.get("/admin/schedules").status_code == 404


def test_api_lists_schedules_and_their_runs_for_who_may_use_the_command(sched_app, users):
    scheduler = Scheduler(sched_app)
    tick(sched_app, scheduler, T0)
    tick(sched_app, scheduler, utc(2026, 12, 7, 10, 5, 1))
    [run] = scheduled_runs(sched_app)
    with sched_app.app_context():
        groups.create_group("ops")
        groups.add_member("ops", "staff")
        groups.add_grant("ops", "hello")
        headers = {
            name: {"Authorization": f"Bearer {tokens.create_token(accounts.get_user(name)).secret}"}
            for name in ("staff", "other")
        }
    client = sched_app.test_client()
    [item] = client.get("/api/v1/schedules", headers=headers["staff"]).get_json()["items"]
    assert item == {
        "name": "every-5", "command": "hello", "cron": "*/5 * * * *", "timezone": "Europe/Berlin", "paused": False,
        "dashboard": False, "next_at": item["next_at"], "last_at": "2026-12-07T10:05:00Z",
        "last_outcome": item["last_outcome"], "last_run_id": run.id,
    }  # fmt: skip
    assert item["last_outcome"] in ("running", "succeeded") and item["next_at"].endswith("Z")
    listed = client.get("/api/v1/schedules/every-5/runs", headers=headers["staff"]).get_json()
    assert [entry["id"] for entry in listed["items"]] == [run.id] and listed["next_cursor"] is None
    assert client.get("/api/v1/schedules", headers=headers["other"]).get_json()["items"] == []
    assert client.get("/api/v1/schedules/every-5/runs", headers=headers["other"]).status_code == 404


def test_cli_lists_pauses_resumes_and_runs_a_schedule_now(sched_app):
    from gateway.cli.schedules import schedules_group

    runner = sched_app.test_cli_runner()
    listed = runner.invoke(schedules_group, ["list"])
    assert listed.exit_code == 0 and listed.output.startswith("every-5\thello\t*/5 * * * *\tEurope/Berlin\tactive\t")
    assert runner.invoke(schedules_group, ["pause", "every-5"]).exit_code == 0
    assert "\tpaused\t" in runner.invoke(schedules_group, ["list"]).output
    assert runner.invoke(schedules_group, ["resume", "every-5"]).exit_code == 0
    assert runner.invoke(schedules_group, ["pause", "nope"]).exit_code == 1
    done = runner.invoke(schedules_group, ["run-now", "every-5"])
    assert done.exit_code == 0, done.output
    [run] = scheduled_runs(sched_app)
    assert f"{run.id}\tsucceeded" in done.output and run.username == "system:scheduler"
    [started] = [event for event in events(sched_app, "run.started") if event.run_id == run.id]
    assert started.detail["schedule"] == "every-5" and started.detail["requested_by"].startswith("cli:")
    assert [e.actor_name.startswith("cli:") for e in events(sched_app, "admin.schedule_resumed")] == [True]


def test_metrics_report_lag_missed_and_the_last_success_per_schedule(sched_app):
    scheduler = Scheduler(sched_app)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    due = now - timedelta(minutes=now.minute % 5)
    tick(sched_app, scheduler, due - timedelta(minutes=64))
    tick(sched_app, scheduler, due + timedelta(seconds=2))  # an hour missed, then one on time
    assert len(scheduled_runs(sched_app)) == 1
    for _ in range(100):  # the run ends in the executor
        if scheduled_runs(sched_app)[0].status == "succeeded":
            break
        threading.Event().wait(0.05)
    text = sched_app.test_client().get("/metrics").get_data(as_text=True)
    assert 'gateway_schedule_lag_seconds_count{schedule="every-5"}' in text
    missed = [
        line for line in text.splitlines() if line.startswith('gateway_schedule_missed_total{schedule="every-5"}')
    ]
    assert missed and float(missed[0].split()[-1]) >= 11
    [success] = [line for line in text.splitlines() if line.startswith("gateway_schedule_last_success_timestamp")]
    assert success.startswith('gateway_schedule_last_success_timestamp_seconds{schedule="every-5"}')
    assert abs(float(success.split()[-1]) - datetime.now(UTC).timestamp()) < 60


@pytest.mark.both_engines
def test_an_occurrence_whose_start_cannot_commit_stays_unclaimed_and_runs_once_later(sched_app, backend):
    """The claim shares the run row's transaction: when that write fails, nothing of the occurrence remains."""
    scheduler = Scheduler(sched_app)
    tick(sched_app, scheduler, T0)
    if backend == "sqlite":
        create = ["CREATE TRIGGER no_runs BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'no runs today'); END"]
        drop = ["DROP TRIGGER no_runs"]
    else:
        create = [
            "CREATE FUNCTION no_runs() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'no runs today'; END $$"
            " LANGUAGE plpgsql",
            "CREATE TRIGGER no_runs BEFORE INSERT ON runs FOR EACH ROW EXECUTE FUNCTION no_runs()",
        ]
        drop = ["DROP TRIGGER no_runs ON runs", "DROP FUNCTION no_runs()"]

    def execute(statements: list[str]) -> None:
        with sched_app.app_context(), db.engine.begin() as connection:
            for statement in statements:
                connection.exec_driver_sql(statement)

    execute(create)
    tick(sched_app, scheduler, utc(2026, 12, 7, 10, 5, 1))  # the start fails: a crash before the commit
    with sched_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ScheduleOccurrence)) == 0
    execute(drop)
    tick(sched_app, scheduler, utc(2026, 12, 7, 10, 5, 40))  # still within the grace: it runs now
    tick(sched_app, scheduler, utc(2026, 12, 7, 10, 5, 50))
    [run] = scheduled_runs(sched_app)
    with sched_app.app_context():
        [claim] = db.session.scalars(select(ScheduleOccurrence)).all()
    assert claim.run_id == run.id and claim.outcome == "started"


def test_the_scheduler_thread_wakes_at_the_due_time_and_a_draining_replica_claims_nothing(sched_app):
    real = datetime.now(UTC)
    boundary = real.replace(second=0, microsecond=0) + timedelta(minutes=5 - real.minute % 5)
    offset = boundary - real - timedelta(seconds=0.6)  # the scheduler's clock: 0.6 s before an occurrence
    scheduler = Scheduler(sched_app, clock=lambda: datetime.now(UTC) + offset)
    with sched_app.app_context():  # first seen now, so the occurrence 0.6 s ahead is its first
        assert scheduler.tick() == boundary
        db.session.remove()
    scheduler.start()
    try:
        for _ in range(60):
            if scheduled_runs(sched_app):
                break
            threading.Event().wait(0.05)
        [run] = scheduled_runs(sched_app)
        with sched_app.app_context():
            [claim] = db.session.scalars(select(ScheduleOccurrence)).all()
        assert claim.scheduled_for == boundary and claim.run_id == run.id
    finally:
        scheduler.stop()
    sched_app.extensions["gateway.draining"] = True
    assert tick(sched_app, scheduler, boundary + timedelta(minutes=5, seconds=1)) is None
    assert len(scheduled_runs(sched_app)) == 1


def test_a_replica_that_starts_draining_during_a_start_leaves_the_occurrence_to_the_others(sched_app):
    """The scheduler saw a live replica, then the drain began: no claim and no refusal, so another replica runs it."""
    from gateway import runs
    from gateway.access.policy import SCHEDULER
    from gateway.runs.workers import get_executor
    from gateway.schedules import store

    at = utc(2026, 12, 7, 10, 5)
    get_executor(sched_app).shutdown(grace=0)
    with sched_app.test_request_context():
        occurrence = runs.Occurrence("every-5", at, store.claimer("every-5", at))
        with pytest.raises(runs.AlreadyClaimed):
            runs.start("hello", {"greeting": "ho"}, runs.Caller(SCHEDULER, None), occurrence=occurrence)
        assert db.session.scalars(select(ScheduleOccurrence)).all() == []
    assert events(sched_app, "run.rejected") == []


RACER = """
import sys, time
from datetime import UTC, datetime, timedelta
from gateway import create_app
from gateway.platform.extensions import db
from gateway.schedules import Scheduler
from tests.conftest import base_environ

url, catalogue, instance, start_at = sys.argv[1:5]
app = create_app(base_environ(url, GATEWAY_COMMANDS_FILE=catalogue), instance_path=instance)
scheduler = Scheduler(app)
time.sleep(max(0.0, float(start_at) - time.time()))  # both processes start their passes together
for step in range(1, 4):
    scheduler.clock = lambda at=datetime(2026, 12, 7, 10, 0, 30, tzinfo=UTC) + timedelta(minutes=5 * step): at
    with app.app_context():
        scheduler.tick()
        db.session.remove()
executor = app.extensions.get("gateway.executor")  # made at a replica's first start: the other may claim all
if executor is not None:
    executor.shutdown(grace=20)  # its runs end before the process does
"""


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_two_gateway_processes_on_postgresql_run_each_occurrence_once(
    sched_app, catalogue_path, database_url, tmp_path
):
    import subprocess
    import sys
    import time

    tick(sched_app, Scheduler(sched_app), T0)  # first seen at T0
    start_at = str(time.time() + 2.5)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, database_url, str(catalogue_path), str(tmp_path / f"racer{i}"), start_at],
            cwd=Path(__file__).resolve().parent.parent,
        )
        for i in range(2)
    ]
    assert [racer.wait(60) for racer in racers] == [0, 0]
    runs = scheduled_runs(sched_app)
    assert len(runs) == 3 and {run.status for run in runs} == {"succeeded"}
    with sched_app.app_context():
        claims = db.session.scalars(select(ScheduleOccurrence).order_by(ScheduleOccurrence.scheduled_for)).all()
    assert [claim.scheduled_for.minute for claim in claims] == [5, 10, 15]
    assert sorted(claim.run_id for claim in claims) == sorted(run.id for run in runs)


KILLED = """
import sys, time
from datetime import UTC, datetime
from gateway import create_app
from gateway.platform.extensions import db
from gateway.schedules import Scheduler
from tests.conftest import base_environ

url, catalogue, instance = sys.argv[1:4]
app = create_app(base_environ(url, GATEWAY_COMMANDS_FILE=catalogue, RUN_HEARTBEAT_SECONDS="1"), instance_path=instance)
scheduler = Scheduler(app, clock=lambda: datetime(2026, 12, 7, 10, 5, 1, tzinfo=UTC))
with app.app_context():
    scheduler.tick()
    db.session.remove()
time.sleep(120)  # its run sleeps too, until this replica is killed
"""


@pytest.mark.slow
def test_a_replica_killed_mid_run_loses_that_run_once_and_the_next_occurrence_runs(make_app, tmp_path, database_url):
    import signal
    import subprocess
    import sys
    import time

    from gateway import runs

    path = tmp_path / "nap.yaml"
    path.write_text(
        'commands:\n  - {name: nap, title: Nap, kind: shell, argv: ["sleep", "30"], timeout: 60}\n'
        'schedules:\n  - {name: nap-5, command: nap, cron: "*/5 * * * *"}\n'
    )
    app = make_app(GATEWAY_COMMANDS_FILE=path, RUN_HEARTBEAT_SECONDS=1)
    scheduler = Scheduler(app)
    tick(app, scheduler, T0)
    replica = subprocess.Popen(
        [sys.executable, "-c", KILLED, database_url, str(path), str(tmp_path / "doomed")],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        for _ in range(200):
            if [run for run in scheduled_runs(app) if run.status == "running"]:
                break
            time.sleep(0.05)
        [first] = scheduled_runs(app)
        assert first.status == "running"
    finally:
        replica.send_signal(signal.SIGKILL)
        replica.wait(10)
    lost: list[str] = []
    for _ in range(100):  # its lease (3 heartbeats) runs out
        with app.app_context():
            lost += runs.reap_expired()
            db.session.remove()
        if lost:
            break
        time.sleep(0.1)
    assert lost == [first.id]
    with app.app_context():
        assert runs.reap_expired() == []  # lost once
    tick(app, scheduler, utc(2026, 12, 7, 10, 10, 1))
    statuses = {run.id: run.status for run in scheduled_runs(app)}
    assert statuses.pop(first.id) == "lost" and list(statuses.values()) in (["running"], ["queued"])
    assert len([e for e in events(app, "run.finished") if e.run_id == first.id]) == 1
