"""Rate-limited logging: a fault that repeats every tick is logged once, then summarised."""

from __future__ import annotations

import logging
import threading
import time


class RateLimitedLogger:
    """Logs the first occurrence of each key at once, then at most once per ``every_s`` with a
    count of the occurrences in between, so a broken source never floods the log."""

    def __init__(self, logger: logging.Logger, every_s: float = 300.0) -> None:
        self._logger = logger
        self._every_s = every_s
        self._seen: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def log(self, key: str, level: int, message: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            last, suppressed = self._seen.get(key, (None, 0))
            if last is not None and now - last < self._every_s:
                self._seen[key] = (last, suppressed + 1)
                return
            self._seen[key] = (now, 0)
        if suppressed:
            message += f" (repeated {suppressed} times since last logged)"
        self._logger.log(level, message, *args)
