"""What every channel shares: the outgoing message description, the delivery result, the protocol."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ..report import RunReport


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message as it would be sent: ``target`` (``"POST https://..."``, ``"SMTP host:port"``),
    ``headers`` and ``body`` (a JSON-ready dict or the text). Secrets are masked before printing."""

    channel: str
    target: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Delivery:
    """The result of one channel: ``ok`` (delivered, or ``skipped`` on purpose), a one-line
    ``detail``, the number of ``attempts`` (requests or SMTP connections) and ``elapsed_s``."""

    channel: str
    ok: bool
    detail: str
    attempts: int = 0
    elapsed_s: float = 0.0
    skipped: bool = False


class Channel(Protocol):
    """A delivery channel: built from its resolved config section, it describes and sends one
    digest message for a run. ``send`` never raises: failures come back as ``Delivery(ok=False)``."""

    name: str

    def prepare(self, report: RunReport) -> list[Outgoing]: ...

    def send(self, report: RunReport) -> Delivery: ...
