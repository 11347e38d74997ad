"""The one redaction point of the CI tooling: every secret value, wherever it appears, becomes ``***``.

What is a secret: the value of a notification setting whose key names a credential, an endpoint
or an address (:func:`is_secret_key`: ``token``, ``password``, ``webhook_url``, ``url``, ``headers``,
``username`` ...), whether written in the config or taken from ``${ENV_VAR}``; and the value of every
notification secret variable of the environment (:data:`SECRET_ENV_VARS`), referenced or not.
Nothing else is masked: ``smtp_port``, timeouts, the repository name stay readable.

Each secret is masked as a substring, in the forms it takes in messages: the value itself, its
URL-quoted forms, and for a URL its path (a failed request names only the path: ``Max retries
exceeded with url: /services/T0/B0/SECRET``), its query and its password; for a header value
such as ``Bearer TOKEN`` the credential after the scheme word too.

Example::

    redactor = Redactor.from_environ({"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/XYZ1"})
    redactor.redact("POST /services/T/B/XYZ1 failed")      # "POST *** failed"
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"
MIN_SECRET_CHARS = 4  # shorter values (a flag, "/") are not masked: masking "1" would garble every number

#: Every environment variable the notification step reads; the test step runs without them.
NOTIFICATION_ENV_VARS = ("HWMON_NOTIFY_CHANNELS", "HWMON_NOTIFICATION_CONFIG", "GITHUB_TOKEN", "GH_TOKEN",
                         "SLACK_WEBHOOK_URL", "SMTP_HOST", "SMTP_PORT", "SMTP_USERNAME", "SMTP_PASSWORD",
                         "HWMON_WEBHOOK_URL", "HWMON_WEBHOOK_TOKEN", "APPRISE_URL")
#: Those whose values are secrets (the others choose channels, files or a port).
SECRET_ENV_VARS = ("GITHUB_TOKEN", "GH_TOKEN", "SLACK_WEBHOOK_URL", "SMTP_HOST", "SMTP_USERNAME", "SMTP_PASSWORD",
                   "HWMON_WEBHOOK_URL", "HWMON_WEBHOOK_TOKEN", "APPRISE_URL")

_SECRET_KEYS = frozenset({"token", "password", "passwd", "secret", "webhook_url", "url", "urls", "headers",
                          "username", "api_key", "authorization"})
_SECRET_SUFFIXES = ("_token", "_password", "_secret", "_key", "_url", "_urls")
_NOT_SECRET_KEYS = frozenset({"api_url", "target_url", "run_url", "report_url"})  # public GitHub / CI links


def is_secret_key(key: str) -> bool:
    """Whether a setting named ``key`` holds a secret (case-insensitive): credentials, webhook and
    service URLs, headers, user names. Public links (``api_url``,
    ``target_url``) are not secrets."""
    name = str(key).strip().lower()
    return name not in _NOT_SECRET_KEYS and (name in _SECRET_KEYS or name.endswith(_SECRET_SUFFIXES))


def secret_forms(value: str) -> set[str]:
    """The substrings under which ``value`` can show up in a message (see the module docstring);
    forms shorter than :data:`MIN_SECRET_CHARS` are left out."""
    value = str(value).strip()
    forms = {value}
    parts = urllib.parse.urlsplit(value) if "://" in value else None
    if parts is not None and parts.netloc:
        forms |= {parts.path, parts.path.lstrip("/"), f"{parts.path}?{parts.query}" if parts.query else "",
                  parts.password or "", *(item for _, item in urllib.parse.parse_qsl(parts.query))}
    scheme, _, credential = value.partition(" ")
    if credential and scheme.isalpha():  # "Bearer TOKEN", "Basic BASE64"
        forms.add(credential.strip())
    forms |= {urllib.parse.quote(form, safe=safe) for form in forms for safe in ("", "/:")}
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


class Redactor:
    """Holds the secret values of one run and masks them in texts and JSON-like data."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: set[str] = set()
        for secret in secrets:
            self.add(secret)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Redactor:
        """A redactor that already knows every :data:`SECRET_ENV_VARS` value set in ``environ``."""
        return cls(environ[name] for name in SECRET_ENV_VARS if environ.get(name))

    def add(self, value: Any) -> None:
        """Register one secret value (a string; lists and dicts: every string inside)."""
        if isinstance(value, Mapping):
            for item in value.values():
                self.add(item)
        elif isinstance(value, (list, tuple, set)):
            for item in value:
                self.add(item)
        elif isinstance(value, str):
            self._forms |= secret_forms(value)

    def add_section(self, section: Any, secret: bool = False) -> None:
        """Register the values of every secret key (:func:`is_secret_key`) in a config section, deeply."""
        if isinstance(section, Mapping):
            for key, item in section.items():
                self.add_section(item, secret or is_secret_key(key))
        elif isinstance(section, (list, tuple)):
            for item in section:
                self.add_section(item, secret)
        elif secret:
            self.add(section)

    def redact(self, text: Any) -> str:
        """``str(text)`` with every form of every secret replaced by ``***``, longest first."""
        out = str(text)
        for form in sorted(self._forms, key=len, reverse=True):
            out = out.replace(form, MASK)
        return out

    def redact_data(self, data: Any) -> Any:
        """A copy of JSON-like ``data`` with secrets masked in every string (keys included)."""
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, Mapping):
            return {self.redact(k): self.redact_data(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.redact_data(v) for v in data]
        return data
