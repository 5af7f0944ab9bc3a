"""The shell runner with real processes: status, output, environment, timeouts, cancel, process groups."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.runners.keeper import OutputKeeper
from gateway.runners.processes import group_alive, kill_group, live_group_members
from gateway.runners.shell import (
    SAFE_PATH,
    RunAs,
    ShellResult,
    ShellRun,
    ShellSpec,
    scrubbed_env,
)

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PATH": SAFE_PATH, "LC_ALL": "C.UTF-8"}


class Recorder:
    """Collects output chunks (stream, bytes) and remembers the spawned pid."""

    def __init__(self) -> None:
        self.chunks: list[tuple[str, bytes]] = []
        self.pid: int | None = None

    def output(self, stream: str, data: bytes) -> None:
        self.chunks.append((stream, data))

    def spawned(self, pid: int) -> None:
        self.pid = pid

    def text(self, stream: str | None = None) -> str:
        return b"".join(data for name, data in self.chunks if stream in (None, name)).decode()

    def merged(self) -> list[tuple[str, bytes]]:
        """Consecutive chunks of one stream joined, so pipe read sizes do not matter."""
        merged: list[tuple[str, bytes]] = []
        for stream, data in self.chunks:
            if merged and merged[-1][0] == stream:
                merged[-1] = (stream, merged[-1][1] + data)
            else:
                merged.append((stream, data))
        return merged


def run(argv: list[str], *, cancel: threading.Event | None = None, on_tick: Any = None, **spec: Any):
    spec.setdefault("env", dict(ENV))
    spec.setdefault("timeout", 30)
    recorder = Recorder()
    runner = ShellRun(
        ShellSpec(argv=argv, **spec),
        on_output=recorder.output,
        on_spawn=recorder.spawned,
        cancel=cancel,
        on_tick=on_tick,
    )
    result = runner.run()
    return result, recorder


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for a parent that may never reap it."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat_line = handle.read()
    except (FileNotFoundError, ProcessLookupError):  # reaped between the lookup and the read
        return False
    return stat_line[stat_line.rfind(b")") + 2 :].split()[0] != b"Z"


def wait_dead(pids: list[int], seconds: float = 5.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        survivors = [pid for pid in pids if alive(pid)]
        if not survivors:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


class GroupWatcher:
    """An on_tick hook that notes every member of the run's process group it sees, to check on them later."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.seen: set[int] = set()

    def __call__(self) -> None:
        if self.recorder.pid is not None:
            self.seen.update(live_group_members(self.recorder.pid) or [])


# --- status and exit codes -----------------------------------------------------------------------


def test_exit_zero_succeeds() -> None:
    result, recorder = run(["echo", "hello"])
    assert (result.status, result.exit_code, result.error) == ("succeeded", 0, None)
    assert recorder.text("stdout") == "hello\n"
    assert result.pid == recorder.pid and result.pid is not None
    assert result.output_bytes == 6 and result.output_sha256 == hashlib.sha256(b"hello\n").hexdigest()
    assert result.truncated is False


def test_nonzero_exit_fails_with_the_code() -> None:
    result, _ = run(["sh", "-c", "exit 3"])
    assert (result.status, result.exit_code, result.error) == ("failed", 3, "exited with status 3")


def test_death_by_signal_fails_naming_the_signal() -> None:
    result, _ = run(["sh", "-c", "kill -KILL $$"])
    assert result.status == "failed" and result.exit_code == -9 and result.error == "killed by signal 9"


def test_missing_program_fails_cleanly() -> None:
    result, recorder = run(["/nonexistent/program", "x"])
    assert result.status == "failed" and result.exit_code is None and result.pid is None
    assert result.error == "program not found: /nonexistent/program"
    assert recorder.pid is None and recorder.chunks == []


def test_program_not_on_the_safe_path_is_not_found() -> None:
    result, _ = run(["definitely-not-a-real-command-xyz"])
    assert result.status == "failed" and "not found" in result.error


def test_non_executable_file_fails_cleanly(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho ran\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    result, recorder = run([str(script)])
    assert result.status == "failed" and result.error == f"program not executable: {script}"
    assert recorder.chunks == []


def test_missing_working_directory_is_named_as_such(tmp_path: Path) -> None:
    result, _ = run(["pwd"], cwd=str(tmp_path / "gone"))
    assert result.status == "failed" and result.error == f"working directory not found: {tmp_path / 'gone'}"


def test_nul_byte_in_argv_fails_cleanly() -> None:
    result, _ = run(["echo", "a\x00b"])
    assert result.status == "failed" and "could not start echo" in result.error


# --- output capture -----------------------------------------------------------------------------


def test_stdout_and_stderr_arrive_in_order_with_their_names() -> None:
    code = (
        "import sys, time\n"
        "for i in range(3):\n"
        "    sys.stdout.write(f'out{i}\\n'); sys.stdout.flush(); time.sleep(0.05)\n"
        "    sys.stderr.write(f'err{i}\\n'); sys.stderr.flush(); time.sleep(0.05)\n"
    )
    result, recorder = run(python(code))
    assert result.status == "succeeded"
    assert recorder.merged() == [
        ("stdout", b"out0\n"),
        ("stderr", b"err0\n"),
        ("stdout", b"out1\n"),
        ("stderr", b"err1\n"),
        ("stdout", b"out2\n"),
        ("stderr", b"err2\n"),
    ]
    assert result.output_bytes == 30


def test_output_streams_while_the_command_runs() -> None:
    """The first line reaches the callback while the command is still sleeping."""
    seen_at: list[float] = []
    recorder = Recorder()

    def output(stream: str, data: bytes) -> None:
        seen_at.append(time.monotonic())
        recorder.output(stream, data)

    started = time.monotonic()
    ShellRun(ShellSpec(argv=["sh", "-c", "echo first; sleep 1.5; echo second"], env=ENV), on_output=output).run()
    finished = time.monotonic()
    assert recorder.text() == "first\nsecond\n"
    assert seen_at[0] - started < finished - started - 1.0


def test_binary_output_is_kept_byte_for_byte() -> None:
    data = bytes(range(256)) * 4
    result, recorder = run(python(f"import sys; sys.stdout.buffer.write({data!r})"))
    assert b"".join(chunk for _, chunk in recorder.chunks) == data
    assert result.output_sha256 == hashlib.sha256(data).hexdigest()


# --- environment, cwd, stdin --------------------------------------------------------------------


def test_environment_is_exactly_what_was_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_LEAK_MARKER", "must-not-leak")
    monkeypatch.setenv("SECRET_KEY", "gateway-secret")
    given_env = {"PATH": SAFE_PATH, "ONLY_THIS": "value with spaces", "EMPTY": ""}
    result, recorder = run(["env"], env=given_env)
    assert result.status == "succeeded"
    seen = dict(line.split("=", 1) for line in recorder.text().splitlines())
    assert seen == given_env


def test_scrubbed_env_has_only_the_declared_variables_and_the_run_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_TEST_LEAK_MARKER", "must-not-leak")
    env = scrubbed_env({"TARGET": "/var", "GATEWAY_USER": "spoofed"}, None, "run-42", "alice")
    assert env == {
        "PATH": SAFE_PATH,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TARGET": "/var",
        "GATEWAY_USER": "alice",
        "GATEWAY_RUN_ID": "run-42",
    }
    account = RunAs(uid=65534, gid=65534, name="nobody", home="/nonexistent")
    assert scrubbed_env({}, account, "run-1", "bob")["HOME"] == "/nonexistent"
    _, recorder = run(["env"], env=env)
    assert "GATEWAY_TEST_LEAK_MARKER" not in recorder.text() and "GATEWAY_USER=alice" in recorder.text()


def test_working_directory(tmp_path: Path) -> None:
    result, recorder = run(["pwd"], cwd=str(tmp_path))
    assert result.status == "succeeded" and recorder.text() == f"{tmp_path}\n"


def test_stdin_is_delivered() -> None:
    result, recorder = run(["cat"], stdin=b"line one\nline two\x00end")
    assert result.status == "succeeded" and recorder.text() == "line one\nline two\x00end"


def test_large_stdin_and_output_do_not_deadlock() -> None:
    data = os.urandom(1 << 20)
    result, recorder = run(["cat"], stdin=data, max_output_bytes=4 << 20)
    assert result.status == "succeeded"
    assert b"".join(chunk for _, chunk in recorder.chunks) == data


def test_without_stdin_the_command_reads_end_of_file() -> None:
    result, recorder = run(["cat"], timeout=5)
    assert result.status == "succeeded" and recorder.chunks == []


# --- timeouts, grace, process groups -------------------------------------------------------------


def test_timeout_kills_the_whole_group_and_grandchildren() -> None:
    recorder = Recorder()
    watcher = GroupWatcher(recorder)
    spec = ShellSpec(argv=["sh", "-c", "sleep 100 & sleep 100"], env=ENV, timeout=1, kill_grace=1)
    started = time.monotonic()
    result = ShellRun(spec, on_output=recorder.output, on_spawn=recorder.spawned, on_tick=watcher).run()
    elapsed = time.monotonic() - started
    assert result.status == "timed_out" and result.error == "timed out after 1 s"
    assert elapsed < 10
    assert len(watcher.seen) >= 2  # the shell (or the sleep it became) and the background sleep
    assert wait_dead(sorted(watcher.seen)) == []
    assert not group_alive(result.pid)
    assert live_group_members(result.pid) == []


def test_sigterm_comes_first_and_a_polite_command_can_clean_up() -> None:
    script = "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.1; done"
    result, recorder = run(["sh", "-c", script], timeout=1, kill_grace=5)
    assert result.status == "timed_out"
    assert recorder.text("stdout") == "ready\ngot-term\n"


def test_a_command_ignoring_sigterm_is_killed_at_the_grace_deadline() -> None:
    recorder = Recorder()
    watcher = GroupWatcher(recorder)
    spec = ShellSpec(argv=["sh", "-c", "trap '' TERM; sleep 100"], env=ENV, timeout=0.5, kill_grace=0.7)
    started = time.monotonic()
    result = ShellRun(spec, on_output=recorder.output, on_spawn=recorder.spawned, on_tick=watcher).run()
    elapsed = time.monotonic() - started
    assert result.status == "timed_out"
    assert result.exit_code == -signal.SIGKILL  # TERM was ignored; KILL ended it
    assert 1.1 <= elapsed < 8  # not before timeout + grace, and not much after
    assert watcher.seen and wait_dead(sorted(watcher.seen)) == []


def test_many_children_are_all_killed_on_timeout() -> None:
    recorder = Recorder()
    watcher = GroupWatcher(recorder)
    script = "for i in $(seq 50); do sleep 100 & done; echo spawned; wait"
    spec = ShellSpec(argv=["sh", "-c", script], env=ENV, timeout=2, kill_grace=1)
    result = ShellRun(spec, on_output=recorder.output, on_spawn=recorder.spawned, on_tick=watcher).run()
    assert result.status == "timed_out" and recorder.text() == "spawned\n"
    assert len(watcher.seen) >= 51
    assert wait_dead(sorted(watcher.seen)) == []
    assert not group_alive(result.pid)


def test_leftovers_of_a_finished_command_are_killed() -> None:
    """The command exits but leaves a background child holding its stdout: the run still ends, promptly."""
    recorder = Recorder()
    watcher = GroupWatcher(recorder)
    spec = ShellSpec(argv=["sh", "-c", "sleep 100 & echo done"], env=ENV, timeout=30)
    started = time.monotonic()
    result = ShellRun(spec, on_output=recorder.output, on_spawn=recorder.spawned, on_tick=watcher).run()
    assert result.status == "succeeded" and recorder.text() == "done\n"
    assert time.monotonic() - started < 10
    assert not group_alive(result.pid)


def test_a_process_that_escaped_the_group_cannot_hold_the_run_open() -> None:
    """A child that calls setsid() keeps the stdout pipe open but is out of reach of killpg: the timeout still ends the run."""
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid(); print(os.getpid(), flush=True); time.sleep(100)\n"
        "time.sleep(100)\n"
    )
    started = time.monotonic()
    result, recorder = run(python(code), timeout=1, kill_grace=0.5)
    escaped = int(recorder.text().split()[0])
    try:
        assert result.status == "timed_out"
        assert time.monotonic() - started < 10
    finally:
        os.kill(escaped, signal.SIGKILL)


def test_cancel_mid_run() -> None:
    cancel = threading.Event()
    recorder = Recorder()
    watcher = GroupWatcher(recorder)

    def output(stream: str, data: bytes) -> None:
        recorder.output(stream, data)
        if b"ready" in data:
            cancel.set()

    spec = ShellSpec(argv=["sh", "-c", "sleep 100 & echo ready; sleep 100"], env=ENV, timeout=60, kill_grace=1)
    started = time.monotonic()
    result = ShellRun(spec, on_output=output, on_spawn=recorder.spawned, cancel=cancel, on_tick=watcher).run()
    assert (result.status, result.error) == ("cancelled", "cancelled")
    assert time.monotonic() - started < 10
    assert watcher.seen and wait_dead(sorted(watcher.seen)) == []


def test_cancel_from_another_thread() -> None:
    cancel = threading.Event()
    outcome: list[ShellResult] = []
    thread = threading.Thread(target=lambda: outcome.append(run(["sleep", "100"], cancel=cancel, kill_grace=1)[0]))
    thread.start()
    time.sleep(0.3)
    cancel.set()
    thread.join(10)
    assert not thread.is_alive() and outcome[0].status == "cancelled"


def test_on_tick_is_called_while_running() -> None:
    ticks: list[float] = []
    result, _ = run(["sleep", "0.5"], on_tick=lambda: ticks.append(time.monotonic()))
    assert result.status == "succeeded" and len(ticks) >= 2


def test_kill_group_and_group_alive_on_a_missing_group() -> None:
    process = subprocess.Popen(["true"], start_new_session=True)
    process.wait()
    assert group_alive(process.pid) is False
    assert kill_group(process.pid, signal.SIGKILL) is False


def test_group_alive_sees_a_running_group() -> None:
    process = subprocess.Popen(["sleep", "100"], start_new_session=True)
    try:
        assert group_alive(process.pid) is True
        assert live_group_members(process.pid) == [process.pid]
        assert kill_group(process.pid, signal.SIGKILL) is True
        process.wait(5)
        assert group_alive(process.pid) is False
    finally:
        process.kill()
        process.wait()


# --- output limits ------------------------------------------------------------------------------

PATTERN_CODE = (
    "import sys\n"
    "out = sys.stdout.buffer\n"
    "for i in range({lines}):\n"
    "    out.write(b'%08d:' % i + b'abcdefghijklmnopqrstuvwxyz' * 3 + b'\\n')\n"
)


def pattern_bytes(lines: int) -> bytes:
    return b"".join(b"%08d:" % i + b"abcdefghijklmnopqrstuvwxyz" * 3 + b"\n" for i in range(lines))


def test_output_beyond_the_limit_keeps_head_and_tail_counts_and_hashes_everything() -> None:
    lines = 60_000  # about 5.2 MB
    expected = pattern_bytes(lines)
    result, recorder = run(python(PATTERN_CODE.format(lines=lines)), max_output_bytes=65536)
    kept = b"".join(data for _, data in recorder.chunks)
    assert result.status == "succeeded" and result.truncated is True
    assert result.output_bytes == len(expected)
    assert result.output_sha256 == hashlib.sha256(expected).hexdigest()
    head, tail = 65536 - 65536 // 4, 65536 // 4
    assert kept == expected[:head] + expected[-tail:]


def test_output_within_the_limit_is_kept_whole() -> None:
    expected = pattern_bytes(500)
    result, recorder = run(python(PATTERN_CODE.format(lines=500)), max_output_bytes=len(expected))
    assert result.truncated is False and result.output_bytes == len(expected)
    assert b"".join(data for _, data in recorder.chunks) == expected


def test_the_tail_keeps_its_stream_names() -> None:
    code = (
        "import sys\n"
        "sys.stdout.write('x' * 100000); sys.stdout.flush()\n"
        "sys.stderr.write('the end\\n'); sys.stderr.flush()\n"
    )
    result, recorder = run(python(code), max_output_bytes=4096)
    assert result.truncated and result.output_bytes == 100008
    # head: 3072 bytes of stdout; tail: the last 1016 bytes of stdout, then stderr's line
    assert recorder.merged() == [("stdout", b"x" * (3072 + 1016)), ("stderr", b"the end\n")]


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(["stdout", "stderr"]), st.binary(min_size=1, max_size=700)), max_size=12))
def test_output_keeper_keeps_exactly_head_and_tail(chunks: list[tuple[str, bytes]]) -> None:
    emitted: list[tuple[str, bytes]] = []
    keeper = OutputKeeper(1024, lambda stream, data: emitted.append((stream, data)))
    for stream, data in chunks:
        keeper.add(stream, data)
    digest = keeper.finish()
    everything = b"".join(data for _, data in chunks)
    kept = b"".join(data for _, data in emitted)
    assert keeper.total == len(everything) and digest == hashlib.sha256(everything).hexdigest()
    assert keeper.truncated is (len(everything) > 1024)
    assert kept == (everything if len(everything) <= 1024 else everything[:768] + everything[-256:])
    # every kept byte is attributed to the stream it came from
    labelled = b"".join(data for stream, data in chunks if stream == "stderr")
    assert all(data in labelled for stream, data in emitted if stream == "stderr")


def _peak_rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/self/status")


@pytest.mark.slow
def test_200_megabytes_of_output_with_bounded_memory() -> None:
    size = 200_000_000
    with contextlib.suppress(OSError):  # reset the peak so that growth from earlier tests cannot hide ours
        Path("/proc/self/clear_refs").write_text("5")
    before = _peak_rss_kib()
    result, recorder = run(["head", "-c", str(size), "/dev/zero"], max_output_bytes=1 << 20, timeout=120)
    growth_mib = (_peak_rss_kib() - before) / 1024
    assert result.status == "succeeded" and result.truncated
    assert result.output_bytes == size
    zeros = hashlib.sha256()
    block = bytes(1 << 20)
    for _ in range(size // len(block)):
        zeros.update(block)
    zeros.update(bytes(size % len(block)))
    assert result.output_sha256 == zeros.hexdigest()
    assert sum(len(data) for _, data in recorder.chunks) == 1 << 20
    assert growth_mib < 100, f"peak RSS grew by {growth_mib:.0f} MiB"


# --- the parent-death signal -------------------------------------------------------------------

HELPER = """
import pwd, sys
from gateway.runners import shell
from gateway.runners.shell import SAFE_PATH, RunAs, ShellRun, ShellSpec

shell.LAUNCH_WITH = sys.argv[1]
run_as = None
if len(sys.argv) > 2:
    entry = pwd.getpwnam(sys.argv[2])
    run_as = RunAs(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name, home="/")

def spawned(pid):
    print(pid, flush=True)

spec = ShellSpec(argv=["sleep", "100"], env={"PATH": SAFE_PATH}, timeout=300, run_as=run_as)
ShellRun(spec, on_output=lambda s, d: None, on_spawn=spawned).run()
"""


def run_as_account_name() -> str | None:
    """The unprivileged account for tests that switch to it (root only; make test creates it)."""
    import pwd

    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("gatewayrun").pw_name
    except KeyError:
        return None


def available_launchers() -> list[Any]:
    """Every way the runner can start a child here (CI requires gateway-launch, which `make` builds)."""
    from gateway.runners import shell

    def available(name: str) -> Any:
        present = {"gateway-launch": shell.LAUNCHER, "setpriv": shell.SETPRIV, "preexec": "always"}[name]
        if present is None and name == "gateway-launch" and os.environ.get("GATEWAY_TEST_REQUIRE_LAUNCHER") == "1":
            raise pytest.UsageError("GATEWAY_TEST_REQUIRE_LAUNCHER=1 but gateway-launch was not built (make)")
        return pytest.param(name, marks=pytest.mark.skipif(present is None, reason=f"{name} is not installed"))

    return [available(name) for name in ("gateway-launch", "setpriv", "preexec")]


@pytest.fixture(params=available_launchers())
def launcher(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    from gateway.runners import shell

    monkeypatch.setattr(shell, "LAUNCH_WITH", request.param)
    return request.param


def test_every_launcher_gives_the_child_its_group_its_env_and_its_argv(launcher: str) -> None:
    code = "import json, os, sys; print(json.dumps([os.getpgid(0) == os.getpid(), dict(os.environ), sys.argv[1:]]))"
    result, recorder = run([sys.executable, "-c", code, "--", "$(id)", "-rf", "a b"])
    assert result.status == "succeeded", recorder.text()
    own_group, env, argv = json.loads(recorder.text("stdout"))
    assert own_group and env == ENV and argv == ["--", "$(id)", "-rf", "a b"]


def test_every_launcher_reports_a_program_failing_to_start_by_its_exit(launcher: str, tmp_path: Path) -> None:
    script = tmp_path / "bad-interpreter"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    result, _ = run([str(script)])
    assert result.status == "failed" and result.exit_code != 0


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/python3"), reason="needs root and python3")
def test_every_launcher_switches_to_the_run_as_account_with_no_extra_groups(launcher: str) -> None:
    import pwd

    try:
        entry = pwd.getpwnam("gatewayrun")
    except KeyError:
        pytest.skip("the gatewayrun account does not exist (make test creates it)")
    run_as = RunAs(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name, home="/")
    code = "import os; print(os.getresuid(), os.getresgid(), os.getgroups())"
    # The system's python: the account may not read this virtualenv's interpreter.
    result, recorder = run(["/usr/bin/python3", "-c", code], run_as=run_as)
    assert result.status == "succeeded", recorder.text()
    uid, gid = entry.pw_uid, entry.pw_gid
    assert recorder.text("stdout").strip() == f"{(uid, uid, uid)} {(gid, gid, gid)} []"


@pytest.mark.slow
@pytest.mark.parametrize("method", available_launchers())
@pytest.mark.parametrize("switch", [False, True], ids=["same-account", "run-as-account"])
def test_the_command_dies_with_its_worker(method: str, switch: bool) -> None:
    # The kernel clears the parent-death signal when the effective ids change: it must be set after.
    account = run_as_account_name()
    if switch and account is None:
        pytest.skip("switching accounts needs root and the gatewayrun account")
    helper = subprocess.Popen(
        [sys.executable, "-c", HELPER, method, *([account] if switch and account else [])],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert helper.stdout is not None
        sleep_pid = int(helper.stdout.readline())
        # Kill the worker once the command runs: setpriv (unlike gateway-launch and the preexec
        # hook) cannot notice a worker that died while it was still starting up.
        deadline = time.monotonic() + 10
        while Path(f"/proc/{sleep_pid}/comm").read_text().strip() != "sleep":
            assert time.monotonic() < deadline, "the command never started"
            time.sleep(0.01)
        helper.send_signal(signal.SIGKILL)
        helper.wait(10)
        assert wait_dead([sleep_pid]) == [], "the command outlived its SIGKILLed worker"
    finally:
        helper.kill()
        helper.wait()
