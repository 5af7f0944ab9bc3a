"""Two real gunicorn replicas on one PostgreSQL database forward the ledger as one: one batch at a time, no gap.

Both replicas run a forwarder thread for the destination; the lease in the
database lets one send at a time (the receiver never sees two batches at once,
nor an event twice while both live).  The holder is then killed (SIGKILL, the
whole process group) while the receiver holds one of its batches: nobody
acknowledges that batch, and once the lease expires the other replica resumes
from the cursor, so the receiver gets the held batch again and everything after
it, contiguous, matching the ledger.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import create_app
from gateway.platform.extensions import db
from tests.conftest import base_environ, create_pg_database, drop_pg_database, pg_url
from tests.receivers import tls_authority
from tests.siem import chain_of, ledger
from tests.test_audit_forward import Siem, cursor, head, wait_until, write_events
from tests.test_replicas import Replica, replica_environ, start_replica

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

CATALOGUE = 'commands:\n  - name: quick\n    title: Quick\n    kind: shell\n    argv: ["true"]\n'


@pytest.fixture
def database(pg_template: str) -> Iterator[str]:
    name = create_pg_database(template=pg_template)
    yield pg_url(name)
    drop_pg_database(name)


def parent_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    raise AssertionError(f"no PPid for {pid}")


def test_two_replicas_forward_one_batch_at_a_time_and_a_killed_holder_is_resumed_without_a_gap(database, tmp_path):
    siem = Siem(tls_authority(tmp_path))
    siem.receiver.start()
    (tmp_path / "commands.yaml").write_text(CATALOGUE)
    settings = {
        "AUDIT_FORWARD": f"siem={siem.receiver.url}/in",
        "OUTBOUND_CA_FILE": siem.authority.ca_file,
        "AUDIT_FORWARD_BATCH": "10",
        "AUDIT_FORWARD_POLL_SECONDS": "1",
        "AUDIT_FORWARD_LEASE_SECONDS": "3",
    }
    environ = replica_environ(database, tmp_path / "commands.yaml", **settings)
    app = create_app(base_environ(database, **settings), instance_path=tmp_path / "instance-test")  # never forwards
    replicas: dict[str, Replica] = {}

    def boot(name: str) -> None:
        replicas[name] = start_replica(name, environ, tmp_path, workers=1, threads=4)

    booting = [threading.Thread(target=boot, args=(name,)) for name in ("a", "b")]
    try:
        for thread in booting:
            thread.start()
        for thread in booting:
            thread.join()
        assert set(replicas) == {"a", "b"}
        start = wait_until(lambda: cursor(app), 10)
        write_events(app, 45)  # written by a third process: the holder finds them by polling
        wait_until(lambda: cursor(app).last_seq == head(app), 15)
        assert siem.max_in_flight == 1 and siem.refused == []

        holder = cursor(app).lease_holder
        killed = next(r for r in replicas.values() if parent_of(int(holder.split(":")[1])) == r.process.pid)
        siem.passing.clear()
        write_events(app, 25)
        assert siem.held.wait(10), "no batch reached the receiver"
        killed.kill()  # mid-batch: the receiver holds its request, unanswered
        siem.passing.set()
        wait_until(lambda: cursor(app).last_seq == head(app), 20)
        assert cursor(app).lease_holder not in (None, holder)
    finally:
        siem.passing.set()
        for replica in replicas.values():
            replica.kill()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        siem.receiver.stop()

    events = siem.events()
    seqs = chain_of(events, after=(start.last_seq, start.last_hash))  # acknowledged: once each, in order, no gap
    assert seqs == list(range(start.last_seq + 1, head(app) + 1))
    hashes = ledger(app)
    assert all(event["hash"] == hashes[event["seq"]] for event in events)
    resent = Counter(event["seq"] for event in siem.events(siem.refused))
    assert len(siem.refused) == 1 and resent  # the held batch, sent again by the other replica
    arrivals = Counter(event["seq"] for event in siem.events(siem.arrived))
    assert all(arrivals[seq] == 1 + resent[seq] for seq in seqs)
