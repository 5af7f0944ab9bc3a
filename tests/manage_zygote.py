"""A warm ``python manage.py``: forks a process that has already imported the CLI's modules.

Started by tests/manage_process.py as ``python tests/manage_zygote.py SOCKET``.  For each
request it forks a waiter, which forks the command process and reports its exit status.
The command process takes the caller's stdin, stdout and stderr (sent over the socket),
working directory, environment and arguments, then runs ``manage.py`` as ``__main__``
through to the interpreter's own exit: exit code, atexit, flushing and thread joins are
Python's, as in a fresh ``python manage.py``.  Only the imports were done before the fork
(about 1 s of CPU each time otherwise).
"""

from __future__ import annotations

import array
import importlib
import json
import os
import pkgutil
import runpy
import select
import signal
import socket
import sys
import threading
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
MAX_REQUEST = 1 << 20


def warm_up() -> None:
    """Import what manage.py and its commands import, and nothing that runs: no thread, no connection."""
    sys.path[0] = str(PROJECT)  # as for ``python manage.py``: the script's directory first (not tests/)
    import alembic.command  # noqa: F401  (db upgrade/check/downgrade)
    import sqlalchemy.orm

    import gateway
    import manage  # noqa: F401

    # create_app imports the web, API and admin layers (and prometheus_client) when it runs.
    for module in pkgutil.walk_packages(gateway.__path__, "gateway."):
        importlib.import_module(module.name)
    sqlalchemy.orm.configure_mappers()  # what the first query would do, in every command process

    assert threading.active_count() == 1, "a warm-up import started a thread: forking would lose it"
    sys.stdout.flush()
    sys.stderr.flush()


def receive(connection: socket.socket) -> tuple[dict[str, object], list[int]]:
    fds = array.array("i")
    data, ancillary, _flags, _address = connection.recvmsg(MAX_REQUEST, socket.CMSG_LEN(3 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return json.loads(data), list(fds)


def serve(path: str) -> tuple[dict[str, object], list[int]]:
    """Answer requests until one is to be run in this (forked) process; return it there."""
    parent = os.getppid()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".binding")
    server.listen(16)
    os.rename(path + ".binding", path)  # the path appears only once it accepts connections
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # waiters are reaped by the kernel
    while True:
        readable, _, _ = select.select([server], [], [], 1.0)
        if os.getppid() != parent:  # the test process is gone
            raise SystemExit(0)
        if not readable:
            continue
        connection, _ = server.accept()
        request, fds = receive(connection)
        if os.fork() == 0:  # the waiter
            server.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            pid = os.fork()
            if pid == 0:  # the command
                return request, _install(connection, fds)
            for fd in fds:
                os.close(fd)
            try:
                connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                _, status = os.waitpid(pid, 0)
                connection.sendall(json.dumps({"status": status}).encode() + b"\n")
            finally:
                os._exit(0)  # a caller that gave up (timeout) has closed its end
        connection.close()
        for fd in fds:
            os.close(fd)


def _install(connection: socket.socket, fds: list[int]) -> list[int]:
    connection.close()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    return [0, 1, 2]


def main() -> None:
    warm_up()
    request, _ = serve(sys.argv[1])
    os.chdir(str(request["cwd"]))
    os.environ.clear()
    os.environ.update(request["env"])  # type: ignore[arg-type]
    sys.argv = ["manage.py", *request["args"]]  # type: ignore[misc]
    sys.path[0] = os.getcwd()
    runpy.run_path("manage.py", run_name="__main__")


if __name__ == "__main__":
    main()
