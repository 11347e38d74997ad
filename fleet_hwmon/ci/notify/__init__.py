"""Failure notifications: email, Slack (and Slack-compatible hooks), GitHub, generic webhooks, Apprise.

``config`` loads the JSON file and resolves ``${ENV_VAR}`` secrets (masked in every output);
``http`` is the one HTTP gateway (timeouts, bounded retries honouring ``Retry-After``);
``render`` holds the sandboxed Jinja2 templates; ``channels`` / ``email_channel`` deliver;
``dispatch`` picks the channels and runs them, one digest message per channel per run.
"""
