"""Any service Apprise knows (``urls``: a list of Apprise URLs, usually ``${ENV_VAR}`` references).

Optional: needs ``pip install '.[notify]'`` in the project's folder; without Apprise the channel reports a failure
saying so. Apprise applies its own connect / read timeouts (``?cto=`` / ``?rto=`` in the URL).
"""

from __future__ import annotations

import time
from typing import Any

from ..report import RunReport
from .base import Delivery, Outgoing
from .render import render, template_context


class AppriseChannel:
    """Sends one title + body digest to every URL in ``urls``."""

    def __init__(self, name: str, section: dict[str, Any], env: Any, max_failures_listed: int) -> None:
        urls = section.get("urls") or []
        self.name = name
        self.urls = [u for u in ([urls] if isinstance(urls, str) else urls) if u]
        self.env = env
        self.max_failures_listed = max_failures_listed

    def _title_body(self, report: RunReport) -> tuple[str, str]:
        context = template_context(report, self.max_failures_listed)
        return (render(self.env, "notify_webhook_title.txt", context),
                render(self.env, "notify_apprise_body.txt", context))

    def prepare(self, report: RunReport) -> list[Outgoing]:
        title, body = self._title_body(report)
        return [Outgoing(self.name, f"apprise {url}", {"title": title, "body": body}) for url in self.urls]

    def send(self, report: RunReport) -> Delivery:
        started = time.monotonic()
        try:
            import apprise
        except ImportError:
            return Delivery(self.name, False,
                            "apprise is not installed (pip install '.[notify]' in the project's folder)")
        if not self.urls:
            return Delivery(self.name, False, "no urls configured")
        notifier = apprise.Apprise()
        for url in self.urls:
            if not notifier.add(url):
                return Delivery(self.name, False, "an Apprise URL was not understood", 0, time.monotonic() - started)
        title, body = self._title_body(report)
        ok = bool(notifier.notify(title=title, body=body))
        return Delivery(self.name, ok, "delivered" if ok else "Apprise reported a failed delivery",
                        len(self.urls), time.monotonic() - started)
