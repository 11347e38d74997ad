"""Notification configuration: one JSON section per channel, secrets as ``${ENV_VAR}`` references.

A section looks like ``{"enabled": false, "webhook_url": "${SLACK_WEBHOOK_URL}", ...}``.
``${NAME}`` is replaced by the environment variable ``NAME`` and ``${NAME:-default}`` falls back
to ``default``; every value taken from the environment is registered with a :class:`Masker`, so
it is shown as ``***`` in dry-run and verbose output and in error messages.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
MASK = "***"
MIN_SECRET_CHARS = 4  # shorter values (a port, a flag) are not masked: masking "1" would garble output


class ConfigError(ValueError):
    """The configuration file is missing, not JSON, or malformed; the message says which."""


class MissingSecretError(ConfigError):
    """A ``${NAME}`` reference names an environment variable that is not set."""

    def __init__(self, channel: str, names: list[str]) -> None:
        super().__init__(f"{channel}: environment variable(s) not set: {', '.join(names)}")
        self.channel = channel
        self.names = names


class Masker:
    """Replaces every registered secret (and its URL-quoted form) with ``***`` in a text."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, value: str) -> None:
        if value and len(value) >= MIN_SECRET_CHARS:
            self._secrets.add(value)
            self._secrets.add(urllib.parse.quote(value, safe=""))
            self._secrets.add(urllib.parse.quote(value, safe="/:"))

    def mask(self, text: Any) -> str:
        """``str(text)`` with every registered secret replaced, longest first."""
        out = str(text)
        for secret in sorted(self._secrets, key=len, reverse=True):
            out = out.replace(secret, MASK)
        return out

    def mask_data(self, data: Any) -> Any:
        """A deep copy of JSON-like ``data`` with secrets masked in every string."""
        if isinstance(data, str):
            return self.mask(data)
        if isinstance(data, Mapping):
            return {self.mask(k): self.mask_data(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.mask_data(v) for v in data]
        return data


def load_config(path: str | Path) -> dict[str, Any]:
    """Read the JSON configuration: ``{channel name: section dict, ...}`` (keys starting with ``_``
    or ``$`` are comments / metadata and are kept out of the channel list). Raises :class:`ConfigError`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(f"cannot read notification config {path}: {err.strerror}") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"notification config {path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"notification config {path} must be a JSON object of channel sections")
    for name, section in channel_sections(data).items():
        if not isinstance(section, dict):
            raise ConfigError(f"notification config {path}: section {name!r} must be an object")
    return data


def channel_sections(config: Mapping[str, Any]) -> dict[str, Any]:
    """The channel sections of a config: every key not starting with ``_`` or ``$`` and not ``defaults``."""
    return {k: v for k, v in config.items() if not k.startswith(("_", "$")) and k != "defaults"}


def is_enabled(section: Mapping[str, Any]) -> bool:
    """A section's ``enabled`` flag; strings such as ``"true"`` / ``"1"`` / ``"yes"`` count as true."""
    value = section.get("enabled", False)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def resolve(value: Any, environ: Mapping[str, str], masker: Masker, missing: list[str],
            keep_unresolved: bool = False) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of ``value`` (deeply).

    Values taken from ``environ`` are added to ``masker``. Names that are unset (and have no
    default) are appended to ``missing``; their reference is left as written when
    ``keep_unresolved`` (dry run), else replaced by an empty string.
    """
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in environ and environ[name] != "":
                masker.add(environ[name])
                return environ[name]
            if default is not None:
                return default
            missing.append(name)
            return match.group(0) if keep_unresolved else ""
        return _REFERENCE.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: resolve(v, environ, masker, missing, keep_unresolved) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, environ, masker, missing, keep_unresolved) for v in value]
    return value
