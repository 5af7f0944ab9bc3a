"""``python manage.py ...`` in a process of its own, for the CLI tests, without its ~1 s of imports each time.

``run`` takes what ``subprocess.run`` takes for a ``[sys.executable, "manage.py", ...]``
command and answers the same ``CompletedProcess``.  The command runs in a new process forked
from a warm one (tests/manage_zygote.py) with the caller's stdin, working directory,
environment and arguments, and its own stdout and stderr; its exit status is the process's.
Anything else (another program, an environment that changes how Python or a library starts
up) goes to ``subprocess.run`` unchanged.  Commands that serve, or that a test signals,
keep using ``subprocess.Popen``: the real entry point stays covered there and in
tests/test_config.py.
"""

from __future__ import annotations

import array
import atexit
import json
import locale
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT = Path(__file__).resolve().parent.parent
ZYGOTE = Path(__file__).with_name("manage_zygote.py")
# Variables read while Python or an imported library starts (stdio encoding, hash seed,
# prometheus_client's multiprocess mode): a command whose environment sets any of them
# runs as a plain subprocess, since the warm process was started without them.
STARTUP_VARIABLES = ("PYTHON", "LANG", "LC_", "PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir")
ZYGOTE_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


class _Zygote:
    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="manage-zygote-")
        self.path = os.path.join(self.directory, "socket")
        self.process = subprocess.Popen(
            [sys.executable, str(ZYGOTE), self.path],
            cwd=PROJECT,
            env=ZYGOTE_ENV,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while not os.path.exists(self.path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the manage.py fork server did not start (exit {self.process.poll()})")
            time.sleep(0.02)
        atexit.register(self.close)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        for name in os.listdir(self.directory):
            os.unlink(os.path.join(self.directory, name))
        os.rmdir(self.directory)


_zygote: _Zygote | None = None


def _warm_process() -> _Zygote:
    global _zygote
    if _zygote is None or _zygote.process.poll() is not None:
        _zygote = _Zygote()
    return _zygote


def _eligible(argv: list[str], env: dict[str, str] | None, cwd: object) -> bool:
    return (
        len(argv) >= 2
        and argv[0] == sys.executable
        and argv[1] == "manage.py"
        and env is not None
        and cwd is not None
        and Path(str(cwd)).resolve() == PROJECT
        and not any(name.startswith(STARTUP_VARIABLES) for name in env)
    )


def _memfd(data: bytes = b"") -> int:
    fd = os.memfd_create("manage-stdio")
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _read_all(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(data: bytes, text: bool) -> str | bytes:
    if not text:
        return data
    # As subprocess's text mode: the locale's encoding, universal newlines.
    return data.decode(locale.getpreferredencoding(False)).replace("\r\n", "\n").replace("\r", "\n")


def run(
    argv: list[str],
    *,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
    input: str | bytes | None = None,
    capture_output: bool = False,
    text: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **other: Any,
) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run`` for ``[sys.executable, "manage.py", ...]``, in a process forked from a warm one."""
    if other or not _eligible(argv, env, cwd):
        return subprocess.run(
            argv, cwd=cwd, env=env, input=input, capture_output=capture_output, text=text,
            timeout=timeout, check=check, **other,
        )  # fmt: skip
    assert env is not None
    if isinstance(input, str):
        input = input.encode(locale.getpreferredencoding(False))
    opened = [_memfd(input) if input is not None else os.dup(0)]
    opened += [_memfd(), _memfd()] if capture_output else [os.dup(1), os.dup(2)]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.connect(_warm_process().path)
            request = json.dumps({"args": argv[2:], "cwd": str(PROJECT), "env": env}).encode()
            connection.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", opened).tobytes())])
            replies = connection.makefile("rb")
            pid = json.loads(replies.readline())["pid"]
            connection.settimeout(timeout)
            try:
                line = replies.readline()
            except TimeoutError:
                os.kill(pid, 9)
                raise subprocess.TimeoutExpired(argv, timeout or 0) from None
            status = json.loads(line)["status"]
        stdout = _decode(_read_all(opened[1]), text) if capture_output else None
        stderr = _decode(_read_all(opened[2]), text) if capture_output else None
    finally:
        for fd in opened:
            os.close(fd)
    completed = subprocess.CompletedProcess(argv, os.waitstatus_to_exitcode(status), stdout, stderr)
    if check:
        completed.check_returncode()
    return completed
