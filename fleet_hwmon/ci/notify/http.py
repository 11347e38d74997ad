"""The one HTTP gateway of the notification channels: requests + a bounded urllib3 ``Retry``.

Every request has a ``(connect, read)`` timeout. 429 and 5xx answers are retried at most
``retries`` times with exponential backoff, honouring ``Retry-After`` (capped at
``max_retry_after_s``); no wait may run past ``max_total_s`` from the first attempt. A read
timeout is not retried (the server may have acted on the POST), so an endpoint that accepts the
connection and never answers costs one read timeout.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class HttpPolicy:
    """Timeouts (seconds) and retry bounds for one channel; built from its config section by
    :meth:`from_section` (keys ``connect_timeout_s``, ``read_timeout_s``, ``retries``,
    ``max_total_s``, ``backoff_s``, ``max_retry_after_s``)."""

    connect_timeout_s: float = 3.05
    read_timeout_s: float = 10.0
    retries: int = 3
    max_total_s: float = 30.0
    backoff_s: float = 0.5
    max_retry_after_s: float = 20.0

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> HttpPolicy:
        fields = {name: type(getattr(cls(), name))(section[name]) for name in cls.__dataclass_fields__
                  if name in section}
        return cls(**fields)


class BoundedRetry(Retry):
    """``Retry`` that caps ``Retry-After`` and refuses any wait past a deadline (monotonic)."""

    def __init__(self, *args: Any, deadline: float | None = None, max_retry_after_s: float = 20.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.max_retry_after_s = max_retry_after_s

    def new(self, **kwargs: Any) -> BoundedRetry:
        fresh = super().new(**kwargs)
        fresh.deadline = self.deadline
        fresh.max_retry_after_s = self.max_retry_after_s
        return fresh

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.max_retry_after_s)

    def sleep(self, response: Any = None) -> None:
        wait_s = self.get_retry_after(response) if (response is not None and self.respect_retry_after_header) \
            else None
        if wait_s is None:
            wait_s = self.get_backoff_time()
        if self.deadline is not None and time.monotonic() + wait_s > self.deadline:
            raise MaxRetryError(None, "", ResponseError(  # type: ignore[arg-type]
                f"gave up: waiting {wait_s:.1f} s more would pass the channel's time limit"))
        if wait_s > 0:
            time.sleep(wait_s)


def make_session(policy: HttpPolicy) -> requests.Session:
    """A ``requests.Session`` whose adapters retry as ``policy`` says; the deadline starts now."""
    retry = BoundedRetry(
        total=policy.retries, connect=1, read=0, status=policy.retries, other=0,
        status_forcelist=RETRY_STATUSES, allowed_methods=None, backoff_factor=policy.backoff_s,
        respect_retry_after_header=True, raise_on_status=False,
        deadline=time.monotonic() + policy.max_total_s, max_retry_after_s=policy.max_retry_after_s)
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def request(policy: HttpPolicy, method: str, url: str, *, session: requests.Session | None = None,
            **kwargs: Any) -> requests.Response:
    """One HTTP call under ``policy``. Returns the final response (possibly a 429 / 5xx after the
    retries); raises ``requests.RequestException`` on timeouts, refused connections and when the
    retry budget is spent."""
    own = session is None
    session = session or make_session(policy)
    try:
        return session.request(method, url, timeout=(policy.connect_timeout_s, policy.read_timeout_s), **kwargs)
    finally:
        if own:
            session.close()
