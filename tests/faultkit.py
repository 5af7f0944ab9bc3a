"""Dependencies the fault tests own and break on purpose: a PostgreSQL cluster, a TCP link to it, Redis, a disk.

Nothing here touches the shared PostgreSQL or Redis: each helper starts its
own throwaway instance on a free loopback port (or mounts its own small
filesystem) and stops it again.  ``TcpProxy`` is the network between the
gateway and its database: ``cut()`` drops every open connection and refuses
new ones, ``restore()`` brings the link back on the same port, so the gateway
keeps its configuration and is never restarted.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

SELF_UID = os.geteuid()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


# --- PostgreSQL ---------------------------------------------------------------------------------


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl live (Debian keeps them out of PATH)."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


class OwnPostgres:
    """A throwaway PostgreSQL cluster in ``root`` on a free port, run as the ``postgres`` OS user when we are root."""

    def __init__(self, root: Path):
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("initdb not found")
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if SELF_UID == 0 else []

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as, *argv], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def init(self) -> None:
        if SELF_UID == 0:
            shutil.chown(self.root, "postgres")
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off -c max_connections=200"
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.root / "log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            # pg_ctl could not (a loaded machine): SIGQUIT is the postmaster's own immediate shutdown.
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGQUIT)

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{port or self.port}/{database}"

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Administrative SQL (test set-up only: our own names, never user input)."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname={database}", autocommit=True) as c:
            c.execute(sql)


# --- the network to the database -----------------------------------------------------------------


class TcpProxy:
    """A loopback TCP relay to ``target_port`` that a test can cut and restore."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.1)
        self._listener = listener
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, args=(listener, self._stop), daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self._flowing.wait()  # a partition holds the bytes, as TCP retransmits them until it heals
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """The link goes down: new connections are refused, open ones are dropped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for end in sockets:
            with contextlib.suppress(OSError):
                end.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                end.close()  # linger 0: a reset, as when a firewall or a dying server drops the connection

    def restore(self) -> None:
        self.start()

    def stall(self) -> None:
        """A partition: connections stay open (and new ones are accepted) but no byte gets through."""
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._flowing.set()
        self.cut()


# --- another process holding the database's write lock -----------------------------------------

# SQLite: the file's write lock (the sqlite3 shell's BEGIN EXCLUSIVE does the same in WAL mode);
# PostgreSQL: the ledger's advisory lock every audited write takes. Held until a line on stdin.
_HOLD_WRITE_LOCK = """
import sys
engine, target, key = sys.argv[1:4]
if engine == "sqlite":
    import sqlite3
    connection = sqlite3.connect(target, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
else:
    import psycopg
    connection = psycopg.connect(target)
    connection.execute("SELECT pg_advisory_xact_lock(%s)", (int(key),))
print("held", flush=True)
sys.stdin.readline()
connection.rollback()
connection.close()
"""


class HeldWriteLock:
    """Another process holds the write lock of the database at ``database_url`` from ``__enter__`` until ``release()``.

    A process, not a connection of the test's own: the gateway's in-process
    writer queue plays no part, as with the CLI or another gunicorn worker.
    """

    def __init__(self, database_url: str, ledger_lock_key: int):
        from sqlalchemy.engine import make_url

        url = make_url(database_url)
        if url.get_backend_name() == "sqlite":
            self.argv = ["sqlite", str(url.database), "0"]
        else:
            libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
            self.argv = ["postgresql", libpq, str(ledger_lock_key)]
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> HeldWriteLock:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _HOLD_WRITE_LOCK, *self.argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "held":
            self.process.kill()
            raise RuntimeError(f"could not take the write lock: {line!r}")
        return self

    def release(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        with contextlib.suppress(OSError):
            assert process.stdin is not None
            process.stdin.write("\n")
            process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __exit__(self, *_: object) -> None:
        self.release()


# --- Redis ----------------------------------------------------------------------------------------


class OwnRedis:
    """A redis-server of our own on a free port, without persistence; ``kill()`` and ``start()`` again."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
        ]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        if not wait_until(lambda: self._pings(client), timeout=10):
            raise RuntimeError("redis-server did not start")

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


# --- a disk that fills up ---------------------------------------------------------------------------


class SmallDisk:
    """A tmpfs of a few megabytes mounted at ``path`` (needs root); ``fill()`` leaves no byte free."""

    def __init__(self, path: Path, megabytes: int = 8):
        self.path = path
        self.megabytes = megabytes
        self.filler = path / "filler"

    def mount(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.megabytes}m,mode=0700", "tmpfs", str(self.path)],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def fill(self) -> None:
        descriptor = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 4096, 1):  # big blocks, then the last crumbs
                try:
                    while os.write(descriptor, b"\0" * size):
                        pass
                except OSError:
                    continue
        finally:
            os.close(descriptor)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, timeout=10)


def can_mount() -> bool:
    return SELF_UID == 0 and shutil.which("mount") is not None


# --- processes ---------------------------------------------------------------------------------------


def processes_of_run(run_id: str) -> list[int]:
    """Live processes carrying ``GATEWAY_RUN_ID=<run_id>`` (every process a run starts inherits it)."""
    marker = f"GATEWAY_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and marker in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found
