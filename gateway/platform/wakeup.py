"""In-process wake-ups for waiters on a run (long-polls, streams, joiners).

Only a signal: the state itself is always read from the database.  Waiters
hold no database connection while they wait.  Across replicas,
``gateway.platform.notify``'s listener turns each PostgreSQL NOTIFY into a
``notify`` here, so waiters need not know where the run executes.
"""

from __future__ import annotations

import threading


class RunWakeups:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._versions: dict[str, int] = {}
        self._epoch = 0  # moved by notify_all: part of every run's version

    def _current(self, run_id: str) -> int:
        return self._versions.get(run_id, 0) + self._epoch

    def version(self, run_id: str) -> int:
        with self._condition:
            return self._current(run_id)

    def notify(self, run_id: str) -> None:
        with self._condition:
            self._versions[run_id] = self._versions.get(run_id, 0) + 1
            if len(self._versions) > 10_000:
                self._versions.pop(next(iter(self._versions)))
            self._condition.notify_all()

    def notify_all(self) -> None:
        """Wake every waiter (after missed notifications, e.g. a listener reconnect): they re-read."""
        with self._condition:
            self._epoch += 1
            self._condition.notify_all()

    def wait(self, run_id: str, seen_version: int, timeout: float) -> int:
        """Block until the run's version moves past ``seen_version`` or ``timeout`` passes."""
        with self._condition:
            self._condition.wait_for(lambda: self._current(run_id) != seen_version, timeout=timeout)
            return self._current(run_id)


wakeups = RunWakeups()
