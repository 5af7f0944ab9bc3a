"""Run output on its way to the database: decoded per stream, batched into few commits.

Chunks are written every ``FLUSH_SECONDS`` or ``FLUSH_BYTES``, whichever comes
first, so a fast command costs no extra commit at all (its output lands with
the finish), and a chatty one a few commits a second.
"""

from __future__ import annotations

import codecs
import logging
import threading
import time
from dataclasses import dataclass, field

from sqlalchemy import bindparam, insert, update

from gateway import notify
from gateway.database import write_connection
from gateway.models import Run, RunOutputChunk
from gateway.prepared import Prepared
from gateway.wakeup import wakeups

log = logging.getLogger("gateway.output")

FLUSH_SECONDS = 0.1
FLUSH_BYTES = 64 * 1024

INSERT_CHUNKS = Prepared(insert(RunOutputChunk.__table__))
_SET_PGID = Prepared(
    update(Run.__table__).where(Run.__table__.c.id == bindparam("run_id")).values(pgid=bindparam("pgid"))
)


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
    pgid: int | None = None
    _pgid_written: bool = False

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

    def due(self) -> bool:
        return bool(self._pending or (self.pgid is not None and not self._pgid_written)) and (
            self._pending_bytes >= FLUSH_BYTES or time.monotonic() - self._last_flush >= FLUSH_SECONDS
        )

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
                self._pgid_written = False

    def take_pgid(self) -> int | None:
        """The process group, if not yet recorded; the caller writes it (finish folds it into its UPDATE)."""
        if self.pgid is None or self._pgid_written:
            return None
        self._pgid_written = True
        return self.pgid

    def flush(self) -> None:
        rows = self.take()
        pgid = self.take_pgid()
        try:
            with write_connection() as tx:  # Core: a long run flushes a few times a second
                if rows:
                    INSERT_CHUNKS.execute_many(tx, rows)
                    notify.publish(self.run_id, "output", tx)
                if pgid is not None:
                    _SET_PGID.execute(tx, {"run_id": self.run_id, "pgid": pgid})
        except Exception:
            self.restore(rows, pgid)
            raise
        wakeups.notify(self.run_id)
