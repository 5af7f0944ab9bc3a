"""A real rsyslogd for the syslog forwarding tests and benchmark: TCP and TLS (gtls) inputs, raw lines to a file.

``Rsyslog(directory, authority).start()`` writes its own configuration (imtcp on
two free ports, the second with the gnutls stream driver and a trustme
certificate), runs ``rsyslogd -n`` as a child process and waits until both ports
accept.  Every message is written to ``out.log`` as received (``%rawmsg%``), one
per line (``tcp.log`` and ``tls.log``, one per input), so a test reads exactly the
bytes the forwarder framed.  ``stop()`` /
``start()`` take it down and back on the same ports.

rsyslog and rsyslog-gnutls are Debian packages: without them the tests skip
locally, and fail under ``GATEWAY_TEST_REQUIRE_RSYSLOG=1`` (``.ci/run`` installs
them and sets it).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import trustme

REQUIRE = os.environ.get("GATEWAY_TEST_REQUIRE_RSYSLOG") == "1"
MAX_MESSAGE_SIZE = "64k"  # what the README tells receivers to set


def rsyslogd() -> str | None:
    """The rsyslogd binary, when it and its TLS driver (rsyslog-gnutls) are installed."""
    binary = shutil.which("rsyslogd") or ("/usr/sbin/rsyslogd" if os.path.exists("/usr/sbin/rsyslogd") else None)
    if binary is None or not glob.glob("/usr/lib/*/rsyslog/lmnsd_gtls.so") + glob.glob(
        "/usr/lib/rsyslog/lmnsd_gtls.so"
    ):
        return None
    return binary


def require_rsyslog() -> str:
    binary = rsyslogd()
    if binary is None:
        message = "rsyslogd with the gtls driver is not installed (apt-get install rsyslog rsyslog-gnutls)"
        if REQUIRE:
            pytest.fail(f"GATEWAY_TEST_REQUIRE_RSYSLOG=1 but {message}")
        pytest.skip(message)
    return binary


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


CONFIG = """\
global(maxMessageSize="{max_size}" workDirectory="{directory}"
       defaultNetstreamDriverCAFile="{ca}" defaultNetstreamDriverCertFile="{cert}"
       defaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" maxSessions="100")
template(name="raw" type="string" string="%rawmsg%\\n")
ruleset(name="plain") {{ action(type="omfile" file="{directory}/tcp.log" template="raw") }}
ruleset(name="tls") {{ action(type="omfile" file="{directory}/tls.log" template="raw") }}
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="plain")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="tls"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
"""


class Rsyslog:
    """rsyslogd listening on ``tcp_port`` (plain) and ``tls_port`` (TLS, certificate from ``ca``)."""

    def __init__(self, directory: Path, ca: trustme.CA):
        self.binary = require_rsyslog()
        self.directory = directory
        self.tcp_port, self.tls_port = free_port(), free_port()
        server = ca.issue_cert("localhost", "127.0.0.1")
        cert, key = directory / "rsyslog-cert.pem", directory / "rsyslog-key.pem"
        server.cert_chain_pems[0].write_to_path(str(cert))
        server.private_key_pem.write_to_path(str(key))
        ca_file = directory / "rsyslog-ca.pem"
        ca.cert_pem.write_to_path(str(ca_file))
        self.config = directory / "rsyslog.conf"
        self.config.write_text(
            CONFIG.format(
                max_size=MAX_MESSAGE_SIZE,
                directory=directory,
                ca=ca_file,
                cert=cert,
                key=key,
                tcp=self.tcp_port,
                tls=self.tls_port,
            )
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, seconds: float = 10) -> Rsyslog:
        log = (self.directory / "rsyslogd.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "-n", "-f", str(self.config), "-i", str(self.directory / "rsyslogd.pid")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"rsyslogd exited: {(self.directory / 'rsyslogd.log').read_text()[-2000:]}")
            if all(_accepts(port) for port in (self.tcp_port, self.tls_port)):
                return self
            time.sleep(0.05)
        self.stop()
        raise AssertionError("rsyslogd did not listen in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def lines(self, input_name: str) -> list[bytes]:
        """Every message received so far on ``tcp`` or ``tls``, as received (without the line end the template adds)."""
        try:
            data = (self.directory / f"{input_name}.log").read_bytes()
        except FileNotFoundError:
            return []
        return data.split(b"\n")[:-1]  # the last part is an unfinished line (or empty)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
