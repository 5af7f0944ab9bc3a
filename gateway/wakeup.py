"""In-process wake-ups for waiters on a run (long-polls, streams, joiners).

Only a signal: the state itself is always read from the database.  Waiters
hold no database connection while they wait.  Cross-replica wake-ups
(PostgreSQL LISTEN/NOTIFY) plug in here too.
"""

from __future__ import annotations

import threading


class RunWakeups:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._versions: dict[str, int] = {}

    def version(self, run_id: str) -> int:
        with self._condition:
            return self._versions.get(run_id, 0)

    def notify(self, run_id: str) -> None:
        with self._condition:
            self._versions[run_id] = self._versions.get(run_id, 0) + 1
            if len(self._versions) > 10_000:
                self._versions.pop(next(iter(self._versions)))
            self._condition.notify_all()

    def wait(self, run_id: str, seen_version: int, timeout: float) -> int:
        """Block until the run's version moves past ``seen_version`` or ``timeout`` passes."""
        with self._condition:
            self._condition.wait_for(lambda: self._versions.get(run_id, 0) != seen_version, timeout=timeout)
            return self._versions.get(run_id, 0)


wakeups = RunWakeups()
