"""Run output on its way to the database: decoded per stream, batched into few commits.

Chunks are written every ``FLUSH_SECONDS`` or ``FLUSH_BYTES``, whichever comes
first, so a fast command costs no extra commit at all (its output lands with
the finish), and a chatty one a few commits a second.  A run's process group
(what a worker starting after a crash kills: ``leases.kill_orphaned_groups``)
is due ``FLUSH_SECONDS`` after the spawn and written at the next tick of a
run's pump; on SQLite the groups of all runs that started meanwhile go in the
same commit (``ProcessGroups``).
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from dataclasses import dataclass, field

from gateway.db.units import write_connection
from gateway.platform import notify
from gateway.platform.wakeup import wakeups
from gateway.runs.store import INSERT_CHUNKS, SET_PGID

log = logging.getLogger("gateway.output")

FLUSH_SECONDS = 0.1
FLUSH_BYTES = 64 * 1024


class ProcessGroups:
    """This process's runs whose process group is not in the database yet (one per executor).

    A run that ends first writes its own group with its finish.  Otherwise,
    with ``batched`` (SQLite), whichever run's flush comes first takes every
    pending group along, so a wave of runs that start together (32 slots
    freeing at once) costs one commit for their groups, not one each: there
    every commit waits its turn for the one writer anyway.  Not on PostgreSQL,
    where each run writes its own: one UPDATE of several runs' rows would take
    their row locks in its own order (a deadlock with the lease renewal's
    UPDATE) and wait for any of them that is finishing.
    """

    def __init__(self, batched: bool = True) -> None:
        self.batched = batched
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[int, float]] = {}  # run id -> (pgid, when spawned)

    def add(self, run_id: str, pgid: int) -> None:
        with self._lock:
            self._pending[run_id] = (pgid, time.monotonic())

    def due(self, run_id: str) -> bool:
        """Whether a flush by ``run_id``'s writer would write a group that is due."""
        oldest = time.monotonic() - FLUSH_SECONDS
        with self._lock:
            if not self.batched:
                own = self._pending.get(run_id)
                return own is not None and own[1] <= oldest
            return any(since <= oldest for _, since in self._pending.values())

    def take_for(self, run_id: str) -> dict[str, int]:
        """What a flush by ``run_id``'s writer writes: every pending group (batched), or its own."""
        if not self.batched:
            own = self.take(run_id)
            return {} if own is None else {run_id: own}
        return self.take_all()

    def take(self, run_id: str) -> int | None:
        """The run's group if still pending (its finish writes it)."""
        with self._lock:
            found = self._pending.pop(run_id, None)
        return None if found is None else found[0]

    def take_all(self) -> dict[str, int]:
        with self._lock:
            taken = {run_id: pgid for run_id, (pgid, _) in self._pending.items()}
            self._pending.clear()
        return taken

    def restore(self, taken: dict[str, int]) -> None:
        """Put back what a failed transaction took: due at once, for the next flush."""
        overdue = time.monotonic() - FLUSH_SECONDS
        with self._lock:
            for run_id, pgid in taken.items():
                self._pending.setdefault(run_id, (pgid, overdue))


@dataclass
class ChunkWriter:
    run_id: str
    next_seq: int = 1
    excerpt_limit: int = 2048
    excerpt: str = ""
    _pending: list[dict[str, object]] = field(default_factory=list)
    _pending_bytes: int = 0
    _last_flush: float = field(default_factory=time.monotonic)
    _decoders: dict[str, codecs.IncrementalDecoder] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    groups: ProcessGroups = field(default_factory=ProcessGroups)

    def add(self, stream: str, data: bytes) -> None:
        decoder = self._decoders.get(stream)
        if decoder is None:
            decoder = self._decoders[stream] = codecs.getincrementaldecoder("utf-8")(errors="replace")
        text = decoder.decode(data)
        if text:
            self._queue(stream, text, len(data))
        self.tick()

    def _queue(self, stream: str, text: str, size: int) -> None:
        with self._lock:
            self._pending.append({"run_id": self.run_id, "seq": self.next_seq, "stream": stream, "text": text})
            self.next_seq += 1
            self._pending_bytes += size
            if len(self.excerpt) < self.excerpt_limit:
                self.excerpt = (self.excerpt + text)[: self.excerpt_limit]

    def close_decoders(self) -> None:
        for stream, decoder in self._decoders.items():
            tail = decoder.decode(b"", final=True)
            if tail:
                self._queue(stream, tail, 0)

    def spawned(self, pgid: int) -> None:
        """The command's process group (its leader's pid): recorded within FLUSH_SECONDS, or with the finish."""
        self.groups.add(self.run_id, pgid)

    def due(self) -> bool:
        output_due = bool(self._pending) and (
            self._pending_bytes >= FLUSH_BYTES or time.monotonic() - self._last_flush >= FLUSH_SECONDS
        )
        return output_due or self.groups.due(self.run_id)

    def tick(self) -> None:
        """Flush when due; a database hiccup keeps the chunks for the next try instead of breaking the run."""
        if self.due():
            try:
                self.flush()
            except Exception:
                log.warning("could not write output of run %s yet; will retry", self.run_id, exc_info=True)

    def take(self) -> list[dict[str, object]]:
        with self._lock:
            rows, self._pending, self._pending_bytes = self._pending, [], 0
            self._last_flush = time.monotonic()
            return rows

    def restore(self, rows: list[dict[str, object]], pgid: int | None) -> None:
        """Put back what a failed transaction took, for the next try (chunks first, in order)."""
        with self._lock:
            self._pending[:0] = rows
            self._pending_bytes += sum(len(str(row["text"])) for row in rows)
        if pgid is not None:
            self.groups.restore({self.run_id: pgid})

    def take_pgid(self) -> int | None:
        """The process group, if not yet recorded; the caller writes it (finish folds it into its UPDATE)."""
        return self.groups.take(self.run_id)

    def flush(self) -> None:
        rows = self.take()
        groups = self.groups.take_for(self.run_id)  # due or not: this commit happens anyway
        if not rows and not groups:
            return  # another run's flush took them meanwhile
        try:
            with write_connection() as tx:  # Core: a long run flushes a few times a second
                if rows:
                    INSERT_CHUNKS.execute_many(tx, rows)
                    notify.publish(self.run_id, "output", tx)
                if groups:
                    SET_PGID.execute_many(tx, [{"run_id": run_id, "pgid": pgid} for run_id, pgid in groups.items()])
        except Exception:
            self.restore(rows, None)
            self.groups.restore(groups)
            raise
        wakeups.notify(self.run_id)
