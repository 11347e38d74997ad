#!/usr/bin/env python3
"""Failure notifications for the hardware-monitoring test suite: email, Slack, GitHub, webhooks, Apprise.

Usage::

    python ci_notification.py --test-status failure --test-report ci_artifacts/<run>/junit.xml \\
        --notification-config notification_config.json [--channels slack,github] [--dry-run] [--verbose]

Secrets are ``${ENV_VAR}`` references in the config, read from the environment and masked in all
output. One digest message per channel per run. Exit status 0 when every chosen channel delivered,
1 when one failed, 2 for a usage or configuration error. Logic: :mod:`fleet_hwmon.ci.notify`.
"""

from __future__ import annotations

import sys

from fleet_hwmon.ci.notify.cli import main

if __name__ == "__main__":
    sys.exit(main())
