"""The shell runner: the one place a process is spawned.

No shell is involved: the program gets the argv list as built from the
catalogue.  The child gets its own process group (so a timeout or cancel kills
everything it started), a parent-death signal (so it dies with its worker),
a scrubbed environment, and, when the gateway can switch users, the
unprivileged ``RUN_AS_USER`` account.  stdout and stderr are read as they
arrive, in order; past ``max_output_bytes`` output is still drained, counted
and hashed, but only the head and the tail are kept, so gigabytes neither fill
memory nor block the child.

This module knows nothing of Flask, requests or users.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import logging
import os
import pwd
import selectors
import shutil
import signal
import subprocess  # nosec B404  # this module is the one process-spawn chokepoint
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.catalogue import Command
from gateway.catalogue.argv import build_argv, build_env, build_stdin
from gateway.platform.phrases import N_
from gateway.runners.base import Outcome, Output, RunContext
from gateway.runners.keeper import OutputCallback, OutputKeeper
from gateway.runners.processes import kill_group

log = logging.getLogger("gateway.runners.shell")

SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
READ_SIZE = 65536
KILL_GRACE_SECONDS = 2.0
DRAIN_AFTER_KILL_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_prctl = _libc.prctl


@dataclass(frozen=True)
class RunAs:
    """The account commands run as: uid, gid and name (for GATEWAY_USER and HOME)."""

    uid: int
    gid: int
    name: str
    home: str


def account(name: str | None) -> RunAs | None:
    """The ``RUN_AS_USER`` account by name (None: commands run as the gateway's own user)."""
    if not name:
        return None
    entry = pwd.getpwnam(name)
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name, home=entry.pw_dir)


@dataclass(frozen=True)
class ShellSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str | None = None
    stdin: bytes | None = None
    timeout: float = 60.0
    max_output_bytes: int = 10 * 1024 * 1024
    kill_grace: float = KILL_GRACE_SECONDS
    run_as: RunAs | None = None


@dataclass
class ShellResult:
    status: str  # succeeded | failed | timed_out | cancelled
    exit_code: int | None
    error: str | None
    output_bytes: int
    output_sha256: str
    truncated: bool
    pid: int | None = None


def _child_setup(parent: int) -> None:  # pragma: no cover - runs in the child between fork and exec
    """Die with the thread that forked us (that thread waits for the child, so: with the worker).

    The worker may have died between fork and prctl: then we are already
    orphaned and reparented (to init, or to a subreaper in a container, so the
    check is against the parent we were forked by, not against pid 1).
    """
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(137)


def _trusted_program(path: str) -> str | None:
    """``path`` if it exists, is executable, and only its owner (root or us) can change it.

    Whoever could replace the launcher would run code as the gateway's user
    (as root, before the switch to the run-as account).
    """
    try:
        info = os.stat(path)
    except OSError:
        return None
    if info.st_uid not in (0, os.geteuid()) or info.st_mode & 0o022 or not os.access(path, os.X_OK):
        log.warning("not using %s: it is writable by others or not ours", path)
        return None
    return path


# How the child gets its parent-death signal and run-as account without forking the gateway
# (which ``preexec_fn`` or ``user=`` would force; see ShellRun._spawn), fastest first:
# gateway-launch (launcher.c, built by `make` next to the virtualenv's python), util-linux's
# setpriv, and as a last resort a preexec hook.
LAUNCHER = _trusted_program(os.path.join(os.path.dirname(sys.executable), "gateway-launch"))
SETPRIV = shutil.which("setpriv", path="/usr/bin:/bin")
LAUNCH_WITH = "gateway-launch" if LAUNCHER else "setpriv" if SETPRIV else "preexec"


EXITED = "exited"  # the selector key of the child's pidfd


def _exit_watch(pid: int) -> int | None:
    """A pidfd that turns readable when the child exits (Linux 5.3+), else None.

    With it the pump wakes the moment the command ends; without it, a command
    that closed its pipes before exiting is polled for (a millisecond or more).
    """
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def check_program(name: str, path: str, cwd: str | None) -> None:
    """Fail like exec would (FileNotFoundError / PermissionError naming the program) before spawning."""
    if "\x00" in name:
        raise ValueError("embedded null byte")
    if "/" in name:
        candidates = [name if os.path.isabs(name) or cwd is None else os.path.join(cwd, name)]
    else:
        candidates = [os.path.join(directory or ".", name) for directory in path.split(os.pathsep)]
    existing = [candidate for candidate in candidates if os.path.exists(candidate)]
    if any(os.path.isfile(c) and os.access(c, os.X_OK) for c in existing):
        return
    if existing:
        raise PermissionError(errno.EACCES, "not executable", name)
    raise FileNotFoundError(errno.ENOENT, "not found", name)


def scrubbed_env(declared: dict[str, str], run_as: RunAs | None, run_id: str, user: str) -> dict[str, str]:
    """Nothing of the gateway's own environment: a safe PATH, the command's own variables, who and which run."""
    env = {"PATH": SAFE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if run_as is not None:
        env["HOME"] = run_as.home
    env.update(declared)
    env["GATEWAY_USER"] = user
    env["GATEWAY_RUN_ID"] = run_id
    return env


class ShellRun:
    """One process run. ``run()`` blocks in the calling (worker) thread until the group is gone."""

    def __init__(
        self,
        spec: ShellSpec,
        on_output: OutputCallback,
        on_spawn: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
        on_tick: Callable[[], None] | None = None,
    ):
        self.spec = spec
        self.on_tick = on_tick
        self.on_output = on_output
        self.on_spawn = on_spawn
        self.cancel = cancel or threading.Event()

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Start the child through a launcher that sets the parent-death signal and the account.

        The launcher (``gateway-launch``, else ``setpriv``) execs the program, so
        CPython can use vfork: well under a millisecond, where a fork of the whole
        gateway (needed for ``preexec_fn`` or ``user=``) costs several.
        """
        spec = self.spec
        check_program(spec.argv[0], spec.env.get("PATH", SAFE_PATH), spec.cwd)
        run_as = spec.run_as if spec.run_as is not None and os.geteuid() == 0 else None
        preexec: Callable[[], None] | None = None
        if LAUNCH_WITH == "gateway-launch" and LAUNCHER is not None:
            ids = [str(run_as.uid), str(run_as.gid)] if run_as else ["-", "-"]
            argv = [LAUNCHER, str(os.getpid()), *ids, *spec.argv]
        elif LAUNCH_WITH in ("gateway-launch", "setpriv") and SETPRIV is not None:
            switch = [f"--reuid={run_as.uid}", f"--regid={run_as.gid}", "--clear-groups"] if run_as else []
            argv = [SETPRIV, *switch, "--pdeathsig", "KILL", "--", *spec.argv]
        else:
            argv = spec.argv
            preexec = functools.partial(_child_setup, os.getpid())  # only prctl, resolved before fork
        # The preexec path switches accounts itself (user=...); the launchers did it above.
        native = run_as if preexec is not None else None
        return subprocess.Popen(  # noqa: S603  # nosec B603  # an argv list from the reviewed catalogue, never a shell
            argv,
            stdin=subprocess.PIPE if spec.stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=spec.env,
            cwd=spec.cwd,
            close_fds=True,
            start_new_session=True,
            preexec_fn=preexec,
            user=native.uid if native else None,
            group=native.gid if native else None,
            extra_groups=[] if native else None,
        )

    def run(self) -> ShellResult:
        keeper = OutputKeeper(self.spec.max_output_bytes, self.on_output)
        process, refusal = self._started()
        if process is None:
            return ShellResult("failed", None, refusal, 0, keeper.finish(), False)
        if self.on_spawn is not None:
            self.on_spawn(process.pid)
        status = self._pump(process, keeper)
        exit_code = process.wait()
        digest = keeper.finish()
        if status is None:
            status = "succeeded" if exit_code == 0 else "failed"
        error = None
        if status == "timed_out":
            error = N_("timed out after %(seconds)s s", seconds=self.spec.timeout)
        elif status == "cancelled":
            error = N_("cancelled")
        elif status == "failed":
            if exit_code >= 0:
                error = N_("exited with status %(status)s", status=exit_code)
            else:
                error = N_("killed by signal %(signal)s", signal=-exit_code)
        return ShellResult(status, exit_code, error, keeper.total, digest, keeper.truncated, process.pid)

    def _started(self) -> tuple[subprocess.Popen[bytes] | None, str | None]:
        """The spawned process, or None and why it could not start (a phrase naming the program or folder)."""
        program, cwd = self.spec.argv[0], self.spec.cwd
        try:
            return self._spawn(), None
        except FileNotFoundError as exc:
            if cwd is not None and exc.filename == cwd:
                return None, N_("working directory not found: %(path)s", path=cwd)
            return None, N_("program not found: %(program)s", program=program)
        except PermissionError:
            return None, N_("program not executable: %(program)s", program=program)
        except NotADirectoryError:
            return None, N_("working directory is not usable: %(path)s", path=str(cwd))
        except OSError as exc:
            return None, N_("could not start %(program)s: %(reason)s", program=program, reason=str(exc.strerror))
        except ValueError as exc:  # a NUL byte or unencodable text in argv, env or cwd
            return None, N_("could not start %(program)s: %(reason)s", program=program, reason=str(exc))

    @staticmethod
    def _read_ready(selector: selectors.BaseSelector, keeper: OutputKeeper) -> None:
        for key, _ in selector.select(timeout=0.1):
            if key.data == EXITED:
                selector.unregister(key.fileobj)
                os.close(key.fd)
                continue
            data = os.read(key.fd, READ_SIZE)
            if data:
                keeper.add(key.data, data)
            else:
                selector.unregister(key.fileobj)
                key.fileobj.close()  # type: ignore[union-attr]

    def _feed_stdin(self, process: subprocess.Popen[bytes]) -> None:
        stdin = process.stdin
        if stdin is None:
            return
        with contextlib.suppress(OSError):
            stdin.write(self.spec.stdin or b"")
        with contextlib.suppress(OSError):
            stdin.close()

    def _pump(self, process: subprocess.Popen[bytes], keeper: OutputKeeper) -> str | None:
        """Read both pipes until they close; enforce timeout and cancel. Returns a forced status or None."""
        pgid = process.pid  # start_new_session: the child leads its own group
        if self.spec.stdin is not None:
            threading.Thread(target=self._feed_stdin, args=(process,), daemon=True).start()
        selector = selectors.DefaultSelector()
        if process.stdout is None or process.stderr is None:
            raise RuntimeError("the child was spawned without its output pipes")
        selector.register(process.stdout, selectors.EVENT_READ, "stdout")
        selector.register(process.stderr, selectors.EVENT_READ, "stderr")
        exit_watch = _exit_watch(process.pid)
        if exit_watch is not None:
            selector.register(exit_watch, selectors.EVENT_READ, EXITED)
        deadline = time.monotonic() + self.spec.timeout
        forced: str | None = None
        kill_at: float | None = None
        give_up_at: float | None = None
        try:
            while True:
                if selector.get_map():
                    self._read_ready(selector, keeper)
                else:
                    # Both pipes closed (e.g. the program closed them at exit); wait for the process itself.
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=0.1)
                if self.on_tick is not None:
                    self.on_tick()
                now = time.monotonic()
                if forced is None and self.cancel.is_set():
                    forced = "cancelled"
                elif forced is None and now >= deadline:
                    forced = "timed_out"
                if forced is not None and kill_at is None:
                    kill_group(pgid, signal.SIGTERM)
                    kill_at = now + self.spec.kill_grace
                if kill_at is not None and now >= kill_at and give_up_at is None:
                    kill_group(pgid, signal.SIGKILL)
                    # The pipes close as the group dies; a process that left the group (setsid) and
                    # still holds one must not keep this worker forever.
                    give_up_at = now + DRAIN_AFTER_KILL_SECONDS
                if give_up_at is not None and now >= give_up_at and process.poll() is not None:
                    break
                if process.poll() is not None:
                    # The command is done; whatever it left running in its group goes too,
                    # which also closes any pipe a leftover still holds.
                    kill_group(pgid, signal.SIGKILL)
                    if not selector.get_map():
                        break
        finally:
            for key in list(selector.get_map().values()):
                if key.data == EXITED:
                    os.close(key.fd)
                else:
                    key.fileobj.close()  # type: ignore[union-attr]  # a pipe an escaped process still holds
            selector.close()
        kill_group(pgid, signal.SIGKILL)
        return forced


class ShellRunner:
    """The ``shell`` kind: an argv from the catalogue, run as a process group (``ShellRun``)."""

    def plan(self, command: Command, values: Mapping[str, Any], context: RunContext) -> ShellSpec:
        argv = build_argv(command, values)  # first: a value it refuses (ParamError) refuses the request
        run_as = account(context.settings.get("RUN_AS_USER"))
        return ShellSpec(
            argv=argv,
            env=scrubbed_env(build_env(command, values), run_as, context.run_id, context.username),
            cwd=command.cwd,
            stdin=build_stdin(command, values),
            timeout=context.timeout,
            max_output_bytes=command.max_output_bytes or context.settings["MAX_OUTPUT_BYTES"],
            run_as=run_as,
        )

    def run(self, plan: ShellSpec, output: Output, cancel: threading.Event) -> Outcome:
        result = ShellRun(plan, on_output=output.add, on_spawn=output.spawned, cancel=cancel, on_tick=output.tick).run()
        return Outcome(
            status=result.status,
            exit_code=result.exit_code,
            error=result.error,
            output_bytes=result.output_bytes,
            output_sha256=result.output_sha256,
            truncated=result.truncated,
        )
