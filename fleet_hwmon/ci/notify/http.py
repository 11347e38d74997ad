"""The one HTTP gateway of the notification channels: requests + a bounded urllib3 ``Retry``.

Every request has a ``(connect, read)`` timeout. 5xx answers are retried at most ``retries``
times with exponential backoff. Rate limits are waited for exactly as the server says: a 429, or
a 403 that is GitHub's rate limit (a ``Retry-After`` header, or ``X-RateLimit-Remaining: 0`` with
``X-RateLimit-Reset``, the epoch second the limit resets), is retried after that wait. A wait
longer than ``max_retry_after_s`` (default 20 s), or one that would run past ``max_total_s``
(default 30 s) from the first attempt, is not waited at all: the answer is returned and the
channel reports the message as not delivered, with the wait the server asked for
(:func:`rate_limit_note`). Any other 403 is an answer, not retried. A read timeout is not retried
(the server may have acted on the POST), so an endpoint that accepts the connection and never
answers costs one read timeout.
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

RETRY_STATUSES = frozenset({403, 429, 500, 502, 503, 504})
RATE_LIMIT_STATUSES = frozenset({403, 429})


def rate_limit_wait_s(headers: Mapping[str, str], now_epoch_s: float | None = None) -> float | None:
    """Seconds a rate-limited answer asks to wait: ``Retry-After`` (seconds or an HTTP date), else
    ``X-RateLimit-Reset`` minus now when ``X-RateLimit-Remaining`` is 0; ``None`` when neither says."""
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    if lowered.get("retry-after"):
        try:
            return Retry.parse_retry_after(Retry(), lowered["retry-after"])
        except Exception:  # an unreadable header says nothing
            return None
    if lowered.get("x-ratelimit-remaining") == "0" and lowered.get("x-ratelimit-reset", "").isdigit():
        now = time.time() if now_epoch_s is None else now_epoch_s
        return max(0.0, int(lowered["x-ratelimit-reset"]) - now)
    return None


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
    """``Retry`` that waits for rate limits as told (see the module docstring) and refuses any wait
    longer than ``max_retry_after_s`` or past ``deadline`` (monotonic)."""

    def __init__(self, *args: Any, deadline: float | None = None, max_retry_after_s: float = 20.0,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = deadline
        self.max_retry_after_s = max_retry_after_s
        # Failed attempts so far, shared with the copies urllib3 makes: a request that ends in an
        # exception has no response to read its retry history from.
        self.failed = [0]

    def new(self, **kwargs: Any) -> BoundedRetry:
        fresh = super().new(**kwargs)
        fresh.deadline = self.deadline
        fresh.max_retry_after_s = self.max_retry_after_s
        fresh.failed = self.failed
        return fresh

    def get_retry_after(self, response: Any) -> float | None:
        return rate_limit_wait_s(response.headers)

    def increment(self, method: str | None = None, url: str | None = None, response: Any = None,
                  error: Exception | None = None, *args: Any, **kwargs: Any) -> BoundedRetry:
        self.failed[0] += 1  # urllib3 calls this once after each attempt that is not the answer
        if response is not None and error is None:
            told_s = self.get_retry_after(response) if response.status in RATE_LIMIT_STATUSES else None
            if response.status == 403 and told_s is None:
                raise MaxRetryError(None, url or "", ResponseError("403 without a rate limit: not retried"))
            wait_s = told_s if told_s is not None else self.get_backoff_time()
            if (told_s is not None and told_s > self.max_retry_after_s) or (
                    self.deadline is not None and time.monotonic() + wait_s > self.deadline):
                raise MaxRetryError(None, url or "", ResponseError(f"asked to wait {wait_s:.0f} s: not waited"))
        return super().increment(method, url, response, error, *args, **kwargs)

    def sleep(self, response: Any = None) -> None:
        told_s = self.get_retry_after(response) if response is not None else None
        wait_s = told_s if told_s is not None else self.get_backoff_time()
        if self.deadline is not None and time.monotonic() + wait_s > self.deadline:
            raise MaxRetryError(None, "", ResponseError(  # type: ignore[arg-type]
                f"gave up: waiting {wait_s:.1f} s more would pass the channel's time limit"))
        if wait_s > 0:
            time.sleep(wait_s)


def attempts(response: requests.Response) -> int:
    """How many requests produced ``response``: 1 plus the retries urllib3 made."""
    retries = getattr(response.raw, "retries", None)
    return 1 + len(getattr(retries, "history", ()) or ())


def failed_attempts(err: requests.RequestException) -> int:
    """How many attempts a request that raised ``err`` made (set by :func:`request`): 0 when it
    never went out (a URL without a scheme, say)."""
    return getattr(err, "attempts", 0)


def answer(policy: HttpPolicy, response: requests.Response, limit_chars: int = 200) -> str:
    """``HTTP 429 <the reply's start> (rate limited: ...)``: one line for a Delivery's detail."""
    return (f"HTTP {response.status_code} {' '.join(response.text[:limit_chars].split())}"
            f"{rate_limit_note(policy, response)}")


def rate_limit_note(policy: HttpPolicy, response: requests.Response) -> str:
    """For a final rate-limited answer, why it was not waited for; ``""`` for any other answer."""
    if response.status_code not in RATE_LIMIT_STATUSES:
        return ""
    told_s = rate_limit_wait_s(response.headers)
    if told_s is None:
        return "" if response.status_code == 403 else " (rate limited)"
    return (f" (rate limited: the server asked to wait {told_s:.0f} s; this channel waits at most "
            f"{policy.max_retry_after_s:g} s per answer and {policy.max_total_s:g} s in all)")


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
    retry budget is spent, with the attempts it made (:func:`failed_attempts`)."""
    own = session is None
    session = session or make_session(policy)
    try:
        retry = session.get_adapter(url).max_retries
    except requests.RequestException:  # no adapter for the URL: the request says why, below
        retry = None
    before = retry.failed[0] if isinstance(retry, BoundedRetry) else None
    try:
        return session.request(method, url, timeout=(policy.connect_timeout_s, policy.read_timeout_s), **kwargs)
    except requests.RequestException as err:
        if before is not None:  # each failed attempt went through the retry's increment
            err.attempts = retry.failed[0] - before  # type: ignore[attr-defined]
        raise
    finally:
        if own:
            session.close()
