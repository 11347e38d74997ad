"""Notification configuration: one JSON section per channel, secrets as ``${ENV_VAR}`` references.

A section looks like ``{"enabled": false, "webhook_url": "${SLACK_WEBHOOK_URL}", ...}``.
``${NAME}`` is replaced by the environment variable ``NAME`` and ``${NAME:-default}`` falls back
to ``default``. The values of secret settings (:func:`redact.is_secret_key`), from the
environment or written literally, are registered with a :class:`redact.Redactor`, so they are
shown as ``***`` in dry-run and verbose output, error messages and result files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .redact import Redactor

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """The configuration file is missing, not JSON, or malformed; the message says which."""


class MissingSecretError(ConfigError):
    """A ``${NAME}`` reference names an environment variable that is not set."""

    def __init__(self, channel: str, names: list[str]) -> None:
        super().__init__(f"{channel}: environment variable(s) not set: {', '.join(names)}")
        self.channel = channel
        self.names = names


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


def substitute(value: Any, environ: Mapping[str, str], missing: list[str], keep_unresolved: bool = False) -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of ``value`` (deeply).

    Names that are unset or empty (and have no default) are appended to ``missing``; their
    reference is left as written when ``keep_unresolved`` (dry run), else replaced by ``""``.
    """
    if isinstance(value, str):
        def one(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if environ.get(name):
                return environ[name]
            if default is not None:
                return default
            missing.append(name)
            return match.group(0) if keep_unresolved else ""
        return _REFERENCE.sub(one, value)
    if isinstance(value, Mapping):
        return {k: substitute(v, environ, missing, keep_unresolved) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, environ, missing, keep_unresolved) for v in value]
    return value


def resolve(section: Any, environ: Mapping[str, str], redactor: Redactor, missing: list[str],
            keep_unresolved: bool = False) -> Any:
    """:func:`substitute` the references of a config section, then register the values of its secret
    settings (literal or from the environment) with ``redactor``."""
    redactor.add_section(substitute(section, environ, []))  # unset references are no secrets: "" here
    return substitute(section, environ, missing, keep_unresolved)
