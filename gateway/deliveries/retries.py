"""When a failed delivery is tried again, and when it is given up: exponential backoff with jitter.

The n-th failure waits ``DELIVERY_RETRY_SECONDS * 2**(n-1)``, capped at
``DELIVERY_RETRY_MAX_SECONDS``, times a random factor between 0.5 and 1
("equal jitter"): deliveries that failed together (a receiver was down) do not
all come back in the same instant.  After ``DELIVERY_MAX_ATTEMPTS`` attempts
a delivery is dead.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_random = secrets.SystemRandom()


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    first_delay: float
    max_delay: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> RetryPolicy:
        return cls(
            max_attempts=int(config["DELIVERY_MAX_ATTEMPTS"]),
            first_delay=float(config["DELIVERY_RETRY_SECONDS"]),
            max_delay=float(config["DELIVERY_RETRY_MAX_SECONDS"]),
        )

    def gives_up(self, attempts: int) -> bool:
        """Whether a delivery that has failed ``attempts`` times is dead."""
        return attempts >= self.max_attempts

    def delay(self, attempts: int) -> float:
        """Seconds before the next try after the ``attempts``-th failure."""
        ceiling = min(self.max_delay, self.first_delay * 2 ** min(max(attempts, 1) - 1, 32))
        return float(ceiling * _random.uniform(0.5, 1.0))
