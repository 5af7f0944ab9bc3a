"""Output capture for a run: the head and the tail kept, everything counted and hashed.

Past the limit, output is still drained, counted and hashed, but only the
first three quarters of the limit and the last quarter are kept, so gigabytes
neither fill memory nor block the child.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# (stream, data) in arrival order; the runner calls it from its own thread.
OutputCallback = Callable[[str, bytes], None]


@dataclass
class OutputKeeper:
    """Keeps the first part and the last part of the output; counts and hashes all of it."""

    limit: int
    emit: OutputCallback
    total: int = 0
    truncated: bool = False
    _head_left: int = 0
    _tail: deque[tuple[str, bytes]] = field(default_factory=deque)
    _tail_bytes: int = 0
    _digest: hashlib._Hash = field(default_factory=hashlib.sha256)

    def __post_init__(self) -> None:
        self._head_left = self.limit - self.limit // 4
        self._tail_limit = self.limit // 4

    def add(self, stream: str, data: bytes) -> None:
        self.total += len(data)
        self._digest.update(data)
        if self._head_left > 0:
            head, data = data[: self._head_left], data[self._head_left :]
            self._head_left -= len(head)
            self.emit(stream, head)
        if not data:
            return
        self._tail.append((stream, data))
        self._tail_bytes += len(data)
        while self._tail_bytes > self._tail_limit and self._tail:
            # Only now is something dropped: output that fits head + tail is not "truncated".
            self.truncated = True
            old_stream, old = self._tail.popleft()
            excess = self._tail_bytes - self._tail_limit
            if len(old) > excess:
                self._tail.appendleft((old_stream, old[excess:]))
                self._tail_bytes -= excess
            else:
                self._tail_bytes -= len(old)

    def finish(self) -> str:
        """Emit the kept tail; return the sha256 of everything."""
        while self._tail:
            stream, data = self._tail.popleft()
            self.emit(stream, data)
        return self._digest.hexdigest()
