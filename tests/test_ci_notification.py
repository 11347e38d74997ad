"""Notifications against real local servers: aiosmtpd SMTP, pytest-httpserver HTTP, raw sockets."""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from werkzeug import Response

from fleet_hwmon.ci.notify.config import load_config, resolve
from fleet_hwmon.ci.notify.dispatch import send_notifications
from fleet_hwmon.ci.notify.github_channel import GITHUB_MARKER_PREFIX
from fleet_hwmon.ci.notify.redact import Redactor
from fleet_hwmon.ci.report import FailedTest, RunReport

ROOT = Path(__file__).resolve().parents[1]
SLACK_PATH = "/services/T000/B000/XXXX"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def failing_report(n_failures: int = 2, message: str = "AssertionError: expected 1") -> RunReport:
    failed = tuple(FailedTest(f"tests/test_x.py::test_{i}", "failed", message) for i in range(n_failures))
    return RunReport(status="failure", counts={"passed": 10, "failed": n_failures, "error": 0, "skipped": 1},
                     failed_tests=failed, commit="0123456789abcdef0123456789abcdef01234567", branch="main",
                     repository="acme/fleet", pull_request=7, run_url="https://ci.example.com/run/1",
                     duration_s=12.5, run_id="20250101T000000Z-abcd1234", mode="standard")


# --- servers -------------------------------------------------------------------------------------
class SmtpHandler:
    """Records messages; drops the first ``drop_first`` connections right after EHLO."""

    def __init__(self, drop_first: int = 0) -> None:
        self.drop_first = drop_first
        self.ehlos = 0
        self.envelopes: list = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802 (aiosmtpd hook)
        self.ehlos += 1
        session.host_name = hostname
        if self.ehlos <= self.drop_first:
            server.transport.close()
        return responses

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server():
    started: list[Controller] = []

    def start(handler: SmtpHandler, **kwargs) -> int:
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        return port

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never sends a byte (C29, C30b)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    listener.close()


def email_config(port: int, **extra) -> dict:
    section = {"enabled": True, "smtp_host": "127.0.0.1", "smtp_port": port, "security": "none",
               "from": "ci@example.com", "to": ["dev1@example.com", "dev2@example.com"], "timeout_s": 1.5}
    section.update(extra)
    return {"email": section}


def parse(envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.original_content, policy=email.policy.default)


# --- email ---------------------------------------------------------------------------------------
def test_email_digest_reaches_every_recipient(smtp_server):
    handler = SmtpHandler()
    port = smtp_server(handler)
    [delivery] = send_notifications(failing_report(3), email_config(port), environ={})
    assert delivery.ok and delivery.attempts == 1, delivery
    assert len(handler.envelopes) == 1  # one digest, not one mail per failure
    envelope = handler.envelopes[0]
    assert sorted(envelope.rcpt_tos) == ["dev1@example.com", "dev2@example.com"]
    msg = parse(envelope)
    assert msg["Subject"].startswith("[FAILED] Hardware monitoring tests on main: 3 failing of 14")
    body = msg.get_content()
    for i in range(3):
        assert f"tests/test_x.py::test_{i} (failed)" in body
    assert "0123456789abcdef0123456789abcdef01234567" in body


def test_email_retries_once_after_a_dropped_connection(smtp_server):
    handler = SmtpHandler(drop_first=1)
    port = smtp_server(handler)
    [delivery] = send_notifications(failing_report(), email_config(port), environ={})
    assert delivery.ok, delivery
    assert delivery.attempts == 2
    assert handler.ehlos == 2 and len(handler.envelopes) == 1


def test_email_dropped_twice_is_a_recorded_failure(smtp_server):
    handler = SmtpHandler(drop_first=5)
    port = smtp_server(handler)
    [delivery] = send_notifications(failing_report(), email_config(port), environ={})
    assert not delivery.ok and delivery.attempts == 2
    assert "dropped the connection twice" in delivery.detail
    assert handler.envelopes == []


def test_email_server_that_never_greets_times_out(silent_server):
    started = time.monotonic()
    [delivery] = send_notifications(failing_report(), email_config(silent_server, timeout_s=1.0), environ={})
    elapsed_s = time.monotonic() - started
    assert not delivery.ok and "timed out after 1 s" in delivery.detail
    assert elapsed_s < 3.0


def test_multiline_error_cannot_inject_a_header(smtp_server):
    handler = SmtpHandler()
    port = smtp_server(handler)
    report = RunReport(status="failure", counts={"passed": 0, "failed": 1},
                       failed_tests=(FailedTest("test_x", "failed", "AssertionError\nBcc: attacker@example.com"),))
    [delivery] = send_notifications(report, email_config(port), environ={})
    assert delivery.ok, delivery
    envelope = handler.envelopes[0]
    assert "attacker@example.com" not in envelope.rcpt_tos
    msg = parse(envelope)
    assert msg["Bcc"] is None
    raw_headers = envelope.original_content.split(b"\r\n\r\n", 1)[0].decode()
    assert not any(line.lower().startswith("bcc:") for line in raw_headers.splitlines())
    subject = str(msg["Subject"])
    assert "\n" not in subject and "\r" not in subject
    assert "AssertionError Bcc: attacker@example.com" in subject
    assert "AssertionError\nBcc: attacker@example.com" in msg.get_content().replace("\r\n", "\n")


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"openssl could not make a test certificate: {err}")
    return str(cert), str(key)


def test_email_over_starttls_and_over_ssl(smtp_server, tls_files):
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    plain = SmtpHandler()
    port = smtp_server(plain, tls_context=context, require_starttls=True)
    [delivery] = send_notifications(failing_report(), email_config(port, security="starttls", ca_file=cert),
                                    environ={})
    assert delivery.ok, delivery
    assert len(plain.envelopes) == 1

    wrapped = SmtpHandler()
    port = smtp_server(wrapped, ssl_context=context)
    [delivery] = send_notifications(failing_report(), email_config(port, security="ssl", ca_file=cert),
                                    environ={})
    assert delivery.ok, delivery
    assert len(wrapped.envelopes) == 1


# --- Slack ---------------------------------------------------------------------------------------
def slack_config(url: str, **extra) -> dict:
    return {"slack": {"enabled": True, "webhook_url": url, "connect_timeout_s": 1.0, "read_timeout_s": 1.5,
                      "retries": 3, "max_total_s": 10, **extra}}


def test_slack_honours_retry_after_then_delivers(httpserver):
    httpserver.expect_ordered_request(SLACK_PATH, method="POST").respond_with_response(
        Response('{"ok":false,"error":"rate_limited"}', status=429, headers={"Retry-After": "2"}))
    httpserver.expect_ordered_request(SLACK_PATH, method="POST").respond_with_data("ok")
    started = time.monotonic()
    [delivery] = send_notifications(failing_report(), slack_config(httpserver.url_for(SLACK_PATH)), environ={})
    elapsed_s = time.monotonic() - started
    assert delivery.ok, delivery
    assert delivery.attempts == 2
    assert elapsed_s >= 2.0
    assert len(httpserver.log) == 2


def test_slack_gives_up_after_bounded_retries(httpserver):
    httpserver.expect_request(SLACK_PATH, method="POST").respond_with_response(
        Response('{"ok":false,"error":"rate_limited"}', status=429, headers={"Retry-After": "0"}))
    config = slack_config(httpserver.url_for(SLACK_PATH), retries=2, backoff_s=0.01)
    [delivery] = send_notifications(failing_report(), config, environ={})
    assert not delivery.ok
    assert "HTTP 429" in delivery.detail
    assert len(httpserver.log) == 3  # the first try and two retries


def test_slack_retry_after_longer_than_the_budget_is_not_waited_for(httpserver):
    httpserver.expect_request(SLACK_PATH, method="POST").respond_with_response(
        Response("rate limited", status=429, headers={"Retry-After": "60"}))
    config = slack_config(httpserver.url_for(SLACK_PATH), max_total_s=3, max_retry_after_s=30)
    started = time.monotonic()
    [delivery] = send_notifications(failing_report(), config, environ={})
    assert not delivery.ok
    assert time.monotonic() - started < 3.0
    assert len(httpserver.log) == 1


@pytest.mark.parametrize(("body", "accepted"), [("ok", True), ('{"ok": true}', True),
                                                 ("invalid_payload", False), ('{"ok": false}', False)])
def test_slack_success_only_when_slack_says_ok(httpserver, body, accepted):
    httpserver.expect_request(SLACK_PATH, method="POST").respond_with_data(body, status=200)
    [delivery] = send_notifications(failing_report(), slack_config(httpserver.url_for(SLACK_PATH)), environ={})
    assert delivery.ok is accepted


def test_many_failures_become_one_digest_post(httpserver):
    httpserver.expect_request(SLACK_PATH, method="POST").respond_with_data("ok")
    report = failing_report(500)
    [delivery] = send_notifications(report, slack_config(httpserver.url_for(SLACK_PATH)), environ={})
    assert delivery.ok
    assert len(httpserver.log) == 1
    text = json.loads(httpserver.log[0][0].get_data())["text"]
    assert "10 passed, 500 failed" in text
    assert text.count("tests/test_x.py::test_") == 20  # max_failures_listed
    assert "…and 480 more" in text


def test_slack_text_is_escaped(httpserver):
    httpserver.expect_request(SLACK_PATH, method="POST").respond_with_data("ok")
    report = RunReport(status="failure", counts={"failed": 1},
                       failed_tests=(FailedTest("t::x", "failed", "<!channel> a & b > c"),))
    send_notifications(report, slack_config(httpserver.url_for(SLACK_PATH)), environ={})
    text = json.loads(httpserver.log[0][0].get_data())["text"]
    assert "&lt;!channel&gt; a &amp; b &gt; c" in text
    assert "<!channel>" not in text


def test_every_http_channel_gives_up_on_a_server_that_never_answers(silent_server):
    url = f"http://127.0.0.1:{silent_server}"
    timeouts = {"connect_timeout_s": 1.0, "read_timeout_s": 1.0, "retries": 3, "max_total_s": 5}
    config = {
        "slack": {"enabled": True, "webhook_url": f"{url}/hook", **timeouts},
        "webhook": {"enabled": True, "url": f"{url}/generic", **timeouts},
        "github": {"enabled": True, "api_url": url, "repository": "acme/fleet", "token": "t0ken-value",
                   **timeouts},
    }
    started = time.monotonic()
    deliveries = send_notifications(failing_report(), config, environ={})
    total_s = time.monotonic() - started
    assert [d.channel for d in deliveries] == ["slack", "webhook", "github"]
    for delivery in deliveries:
        assert not delivery.ok
        assert "ReadTimeout" in delivery.detail
        assert delivery.attempts == 1, delivery  # a read timeout is not retried: the POST may have acted
        assert delivery.elapsed_s < 2.5, delivery
    assert total_s < 7.0


def test_a_refused_connection_reports_the_attempts_it_made(tmp_path):
    # Nothing listens: the connection is refused, tried again once (connect=1), then given up.
    # The delivery says two attempts, not 0 as when the request raised and left no response.
    url = f"http://127.0.0.1:{free_port()}"
    config = {"webhook": {"enabled": True, "url": f"{url}/generic", "backoff_s": 0},
              "github": {"enabled": True, "api_url": url, "repository": "acme/fleet", "token": "t0ken-value",
                         "backoff_s": 0}}
    deliveries = send_notifications(failing_report(), config, environ={})
    assert [(d.channel, d.ok, d.attempts) for d in deliveries] == [("webhook", False, 2), ("github", False, 2)]
    assert all("ConnectionError" in d.detail for d in deliveries)
    path = tmp_path / "notify.json"
    path.write_text(json.dumps({"webhook": config["webhook"]}))
    done = run_cli("--test-status", "failure", "--notification-config", str(path))
    assert done.returncode == 1 and "(2 attempt(s), " in done.stderr, done.stderr
    # A URL that never went out (no scheme) made no attempt at all.
    [unsent] = send_notifications(failing_report(), {"webhook": {"enabled": True, "url": "example.com/hook"}},
                                  environ={})
    assert (unsent.ok, unsent.attempts) == (False, 0) and "MissingSchema" in unsent.detail


# --- GitHub --------------------------------------------------------------------------------------
def github_config(api_url: str) -> dict:
    return {"github": {"enabled": True, "api_url": api_url, "repository": "${GITHUB_REPOSITORY}",
                       "token": "${GITHUB_TOKEN}", "read_timeout_s": 2, "max_total_s": 10}}


def test_github_status_and_comment_updated_not_duplicated(httpserver):
    sha = "0123456789abcdef0123456789abcdef01234567"
    comments: list[dict] = [{"id": 11, "body": "an unrelated review remark"}]

    def list_comments(request):
        return Response(json.dumps(comments), status=200, content_type="application/json")

    def create_comment(request):
        body = json.loads(request.get_data())["body"]
        comments.append({"id": 99, "body": body})
        return Response(json.dumps({"id": 99}), status=201, content_type="application/json")

    def update_comment(request):
        comments[-1]["body"] = json.loads(request.get_data())["body"]
        return Response(json.dumps({"id": 99}), status=200, content_type="application/json")

    httpserver.expect_request(f"/repos/acme/fleet/statuses/{sha}", method="POST").respond_with_json(
        {"state": "failure"}, status=201)
    httpserver.expect_request("/repos/acme/fleet/issues/7/comments", method="GET").respond_with_handler(
        list_comments)
    httpserver.expect_request("/repos/acme/fleet/issues/7/comments", method="POST").respond_with_handler(
        create_comment)
    httpserver.expect_request("/repos/acme/fleet/issues/comments/99", method="PATCH").respond_with_handler(
        update_comment)
    environ = {"GITHUB_TOKEN": "ghs_secretvalue123", "GITHUB_REPOSITORY": "acme/fleet"}
    config = github_config(httpserver.url_for("/").rstrip("/"))

    [first] = send_notifications(failing_report(), config, environ=environ)
    assert first.ok, first
    assert "comment added" in first.detail
    passing = RunReport(status="success", counts={"passed": 12}, commit=sha, pull_request=7, mode="standard")
    [second] = send_notifications(passing, config, environ=environ)
    assert second.ok, second
    assert "comment 99 updated" in second.detail

    methods = [(req.method, req.path) for req, _ in httpserver.log]
    assert methods.count(("POST", "/repos/acme/fleet/issues/7/comments")) == 1
    assert methods.count(("PATCH", "/repos/acme/fleet/issues/comments/99")) == 1
    assert len(comments) == 2
    assert GITHUB_MARKER_PREFIX in comments[-1]["body"] and "tests passed" in comments[-1]["body"]
    statuses = [json.loads(req.get_data()) for req, _ in httpserver.log if "/statuses/" in req.path]
    assert [s["state"] for s in statuses] == ["failure", "success"]
    assert [s["context"] for s in statuses] == ["hardware-monitoring/tests/standard"] * 2
    assert statuses[0]["target_url"] == "https://ci.example.com/run/1"
    for request, _ in httpserver.log:
        assert request.headers["Authorization"] == "Bearer ghs_secretvalue123"


def test_github_error_does_not_leak_the_token(httpserver):
    sha = "0123456789abcdef0123456789abcdef01234567"
    httpserver.expect_request(f"/repos/acme/fleet/statuses/{sha}", method="POST").respond_with_data(
        "Bad credentials for ghs_secretvalue123", status=401)
    environ = {"GITHUB_TOKEN": "ghs_secretvalue123", "GITHUB_REPOSITORY": "acme/fleet"}
    [delivery] = send_notifications(failing_report(), github_config(httpserver.url_for("/").rstrip("/")),
                                    environ=environ)
    assert not delivery.ok
    assert "HTTP 401" in delivery.detail
    assert "ghs_secretvalue123" not in delivery.detail and "***" in delivery.detail


# --- config, dry run, CLI ------------------------------------------------------------------------
def test_example_config_is_complete_disabled_and_secret_free():
    config = load_config(ROOT / "notification_config.json")
    for name in ("email", "slack", "github"):
        assert config[name]["enabled"] is False
    assert config["slack"]["webhook_url"] == "${SLACK_WEBHOOK_URL}"
    assert config["email"]["password"] == "${SMTP_PASSWORD}"
    assert config["github"]["token"] == "${GITHUB_TOKEN}"
    assert config["email"]["smtp_host"] and config["email"]["to"]
    assert config["github"]["repository"] and config["github"]["api_url"]


def test_env_references_resolve_and_mask():
    redactor = Redactor()
    missing: list[str] = []
    value = resolve({"url": "https://hooks.example.com/${HOOK}", "port": "${PORT:-587}", "x": "${UNSET}"},
                    {"HOOK": "s3cr3t/path"}, redactor, missing)
    assert value == {"url": "https://hooks.example.com/s3cr3t/path", "port": "587", "x": ""}
    assert missing == ["UNSET"]
    assert redactor.redact(f"error at {value['url']}") == "error at ***"
    assert redactor.redact("quoted s3cr3t%2Fpath and the path /s3cr3t/path") == "quoted *** and the path ***"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "ci_notification.py"), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env=env)


def test_cli_dry_run_prints_the_message_and_masks_secrets(tmp_path, httpserver):
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({"slack": {"enabled": True, "webhook_url": "${HWMON_TEST_HOOK}"}}))
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"run_id": "r1", "status": "failed", "counts": {"passed": 1, "failed": 1},
                                   "failed_tests": [{"nodeid": "t::a", "outcome": "failed", "message": "boom"}]}))
    secret_url = httpserver.url_for("/hook/abcdef-secret-token")
    env = {**os.environ, "HWMON_TEST_HOOK": secret_url}
    done = run_cli("--test-report", str(summary), "--notification-config", str(config), "--dry-run",
                   "--verbose", env=env)
    assert done.returncode == 0, done.stderr
    assert "abcdef-secret-token" not in done.stdout + done.stderr
    assert "--- slack: POST ***" in done.stdout
    payload = json.loads(done.stdout.split("--- slack: POST ***\n", 1)[1].split("\nslack: ok", 1)[0])
    assert payload["text"].startswith(":x: *Hardware monitoring tests FAILED*")
    assert "`t::a` (failed): boom" in payload["text"]
    assert httpserver.log == []  # nothing was sent


def test_cli_dry_run_shows_the_email_decoded_with_the_crash_line(tmp_path):
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({"email": {
        "enabled": True, "smtp_host": "smtp.example.com", "security": "ssl", "from": "ci@example.com",
        "to": ["${HWMON_TEST_MAILTO}"], "smtp_port": "${HWMON_TEST_SMTP_PORT}", "password": "literal-pass-1234"}}))
    crash = "AssertionError: assert 1 == 2\n +  where 1 = compute()"
    long_line = "ValueError: setting=value — " + "x" * 90
    summary = tmp_path / "summary.json"
    summary.write_text(json.dumps({"run_id": "r1", "status": "failed", "counts": {"passed": 1, "failed": 2},
                                   "failed_tests": [{"nodeid": "t::a", "outcome": "failed", "message": crash},
                                                    {"nodeid": "t::b", "outcome": "failed", "message": long_line}]}))
    env = {**os.environ, "HWMON_TEST_MAILTO": "oncall@example.com", "HWMON_TEST_SMTP_PORT": "2465"}
    done = run_cli("--test-report", str(summary), "--notification-config", str(config), "--dry-run",
                   "--branch", "main", "--verbose", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "literal-pass-1234" not in out + done.stderr and '"password": "***"' in out
    assert "=3D" not in out and "=\n" not in out and "quoted-printable" not in out and "=?utf-8?" not in out
    lines = out[out.index("--- email:"):].splitlines()
    # recipients and the port are not secrets: shown as they are
    assert lines[0] == "--- email: SMTP smtp.example.com:2465 (ssl) to oncall@example.com"
    assert lines[1] == ("Subject: [FAILED] Hardware monitoring tests on main: 2 failing of 3 - t::a: "
                        "AssertionError: assert 1 == 2 + where 1 = compute()")
    assert lines[2:4] == ["From: ci@example.com", "To: oncall@example.com"]
    assert 'Content-Type: text/plain; charset="utf-8"' in lines
    body = out.split("Failed tests:\n", 1)[1]
    assert body.startswith(f"\n* t::a (failed)\n{crash}\n\n* t::b (failed)\n{long_line}\n")


def test_cli_exit_status_follows_delivery(tmp_path, httpserver):
    httpserver.expect_request("/ok", method="POST").respond_with_data("ok")
    httpserver.expect_request("/bad", method="POST").respond_with_data("no_service", status=404)
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({
        "slack": {"enabled": True, "webhook_url": httpserver.url_for("/ok")},
        "mattermost": {"type": "slack", "enabled": False, "webhook_url": httpserver.url_for("/bad")}}))
    ok = run_cli("--test-status", "failure", "--notification-config", str(config), "--result-json",
                 str(tmp_path / "result.json"))
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "result.json").read_text())[0] == {
        "channel": "slack", "ok": True, "skipped": False, "detail": "delivered", "attempts": 1,
        "elapsed_s": pytest.approx(0, abs=5)}
    bad = run_cli("--test-status", "failure", "--notification-config", str(config), "--channels", "slack,mattermost")
    assert bad.returncode == 1
    assert "mattermost: FAILED: not accepted: HTTP 404" in bad.stderr
    skipped = run_cli("--test-status", "success", "--notification-config", str(config))
    assert skipped.returncode == 0 and "skipped: notify_on does not include success" in skipped.stdout
    missing = run_cli("--test-status", "failure", "--notification-config", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "cannot read notification config" in missing.stderr


def test_unset_secret_names_the_variable_and_fails(tmp_path):
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({"slack": {"enabled": True, "webhook_url": "${HWMON_TEST_UNSET_HOOK}"}}))
    done = run_cli("--test-status", "failure", "--notification-config", str(config))
    assert done.returncode == 1
    assert "environment variable(s) not set: HWMON_TEST_UNSET_HOOK" in done.stderr


def test_a_section_of_an_unknown_type_is_a_configuration_error_before_anything_is_sent(tmp_path, httpserver):
    httpserver.expect_request("/ok").respond_with_data("ok")
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({"slack": {"enabled": True, "webhook_url": httpserver.url_for("/ok")},
                                  "pigeon": {"enabled": True}}))
    for status in ("success", "failure"):  # whatever the run's status: not "skipped", not sent
        done = run_cli("--test-status", status, "--notification-config", str(config))
        assert done.returncode == 2, done.stdout + done.stderr
        assert "channel 'pigeon': unknown type 'pigeon'" in done.stderr
    assert httpserver.log == []


def test_a_dry_run_says_which_unset_variables_a_real_run_would_fail_on(tmp_path):
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({"slack": {"enabled": True, "webhook_url": "${HWMON_TEST_UNSET_HOOK}"}}))
    done = run_cli("--test-status", "failure", "--notification-config", str(config), "--dry-run", "--verbose")
    assert done.returncode == 0, done.stderr
    assert ("dry run: 1 message(s) shown; a real run would fail: environment variable(s) not set: "
            "HWMON_TEST_UNSET_HOOK") in done.stdout


def test_no_enabled_channel_is_a_dry_run_that_says_so():
    done = run_cli("--test-status", "failure", "--notification-config", str(ROOT / "notification_config.json"))
    assert done.returncode == 0, done.stderr
    assert "no notification channel is enabled; dry run" in done.stdout
    assert "--- slack: POST ${SLACK_WEBHOOK_URL}" in done.stdout


def test_apprise_channel_posts_through_apprise(httpserver):
    pytest.importorskip("apprise")
    httpserver.expect_request("/apprise", method="POST").respond_with_data("ok")
    port = httpserver.port
    config = {"apprise": {"enabled": True, "urls": [f"json://127.0.0.1:{port}/apprise"]}}
    [delivery] = send_notifications(failing_report(), config, environ={})
    assert delivery.ok, delivery
    body = json.loads(httpserver.log[0][0].get_data())
    assert body["title"] == "Hardware monitoring tests FAILED on main"
    assert "10 passed, 2 failed" in body["message"]


# --- secrets: one redaction, every output ----------------------------------------------------------
def test_slack_path_secret_never_leaves_in_a_connection_error(tmp_path):
    hook = f"http://127.0.0.1:{free_port()}/services/T0ACME/B0ACME/hookSecretXYZ123"  # nothing listens there
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({"slack": {"enabled": True, "webhook_url": "${SLACK_WEBHOOK_URL}", "retries": 0,
                                            "connect_timeout_s": 1.0}}))
    env = {**os.environ, "SLACK_WEBHOOK_URL": hook}
    done = run_cli("--test-status", "failure", "--notification-config", str(config), "--verbose",
                   "--result-json", str(tmp_path / "result.json"), env=env)
    assert done.returncode == 1
    assert "Max retries exceeded with url: ***" in done.stderr  # the path alone is masked too
    written = done.stdout + done.stderr + (tmp_path / "result.json").read_text()
    for part in ("hookSecretXYZ123", "/services/T0ACME", "T0ACME/B0ACME"):
        assert part not in written


def test_literal_config_secrets_are_masked_and_nothing_else(tmp_path, httpserver):
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({
        "email": {"enabled": True, "smtp_host": "smtp.example.com", "smtp_port": "${SMTP_PORT}",
                  "username": "ci-bot", "password": "hunter2-literal", "from": "ci@example.com",
                  "to": ["a@example.com"]},
        "github": {"enabled": True, "api_url": httpserver.url_for("/").rstrip("/"), "repository": "acme/fleet",
                   "token": "ghp_literalToken42", "commit_status": True, "pr_comment": False},
        "webhook": {"enabled": True, "url": "https://hooks.example.com/in/abc",
                    "headers": {"Authorization": "Bearer whk_literal_777"}}}))
    env = {**os.environ, "SMTP_PORT": "2525"}
    done = run_cli("--test-status", "failure", "--commit", "a" * 40, "--notification-config", str(config),
                   "--dry-run", "--verbose", env=env)
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    for secret in ("hunter2-literal", "ghp_literalToken42", "whk_literal_777", "hooks.example.com/in/abc"):
        assert secret not in out
    assert "Authorization: Bearer ***" in out and "Authorization: ***" in out  # github's, the webhook's
    assert '"smtp_port": "2525"' in out and "smtp.example.com:2525" in out  # a port is no secret
    assert '"repository": "acme/fleet"' in out and '"username": "***"' in out


# --- GitHub as it is: head SHA, one context per job and mode, size limit, rate limits -------------
def test_pull_request_status_goes_to_the_head_commit_one_context_per_job_and_mode(tmp_path, httpserver):
    head, merge = "b" * 40, "c" * 40
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": 5, "pull_request": {"number": 5, "head": {"sha": head}}}))
    comments: list[dict] = []

    def create_comment(request):
        comments.append({"id": len(comments) + 1, "body": json.loads(request.get_data())["body"]})
        return Response(json.dumps(comments[-1]), status=201, content_type="application/json")

    httpserver.expect_request(f"/repos/acme/fleet/statuses/{head}", method="POST").respond_with_json({}, status=201)
    httpserver.expect_request("/repos/acme/fleet/issues/5/comments", method="GET").respond_with_handler(
        lambda request: Response(json.dumps(comments), status=200, content_type="application/json"))
    httpserver.expect_request("/repos/acme/fleet/issues/5/comments", method="POST").respond_with_handler(
        create_comment)
    config = tmp_path / "notify.json"
    config.write_text(json.dumps({"github": {
        "enabled": True, "api_url": httpserver.url_for("/").rstrip("/"), "repository": "${GITHUB_REPOSITORY}",
        "token": "${GITHUB_TOKEN}", "job": "${GITHUB_JOB:-}"}}))
    env = {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_REPOSITORY": "acme/fleet", "GITHUB_TOKEN": "ghs_tok3n",
           "GITHUB_SHA": merge, "GITHUB_REF": "refs/pull/5/merge", "GITHUB_EVENT_PATH": str(event),
           "GITHUB_JOB": "integration", "GITHUB_RUN_ID": "1"}
    for mode in ("full", "long"):
        summary = tmp_path / f"{mode}.json"
        summary.write_text(json.dumps({"status": "failed", "mode": mode, "counts": {"passed": 1, "failed": 1},
                                       "failed_tests": [{"nodeid": "t::a", "outcome": "failed", "message": "x"}]}))
        done = run_cli("--test-report", str(summary), "--notification-config", str(config), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
    statuses = [json.loads(r.get_data()) for r, _ in httpserver.log if "/statuses/" in r.path]
    assert [s["context"] for s in statuses] == ["hardware-monitoring/tests/integration/full",
                                                "hardware-monitoring/tests/integration/long"]
    assert not any(merge in r.path for r, _ in httpserver.log)
    assert len(comments) == 2  # the long job did not overwrite the full job's comment
    assert f"{GITHUB_MARKER_PREFIX} hardware-monitoring/tests/integration/full -->" in comments[0]["body"]
    assert f"{GITHUB_MARKER_PREFIX} hardware-monitoring/tests/integration/long -->" in comments[1]["body"]


def test_a_huge_comment_is_cut_to_githubs_limit_with_a_count(httpserver):
    sha = "0123456789abcdef0123456789abcdef01234567"
    httpserver.expect_request(f"/repos/acme/fleet/statuses/{sha}", method="POST").respond_with_json({}, status=201)
    httpserver.expect_request("/repos/acme/fleet/issues/7/comments", method="GET").respond_with_json([])
    bodies: list[str] = []

    def create_comment(request):
        body = json.loads(request.get_data())["body"]
        bodies.append(body)
        status = 422 if len(body) > 65536 else 201  # what GitHub answers
        return Response(json.dumps({"id": 3}), status=status, content_type="application/json")

    httpserver.expect_request("/repos/acme/fleet/issues/7/comments", method="POST").respond_with_handler(
        create_comment)
    config = github_config(httpserver.url_for("/").rstrip("/"))
    config["github"]["max_failures_listed"] = 1000
    report = failing_report(800, message="AssertionError: " + "x" * 1400)
    [delivery] = send_notifications(report, config, environ={"GITHUB_TOKEN": "t0ken-x", "GITHUB_REPOSITORY":
                                                              "acme/fleet"})
    assert delivery.ok, delivery
    [body] = bodies
    assert 60000 < len(body) <= 65536
    listed = body.count("tests/test_x.py::test_")
    assert 20 < listed < 800 and f"…and {800 - listed} more." in body


def _rate_limited(httpserver, status: int, headers: dict, then: int = 201) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    path = f"/repos/acme/fleet/statuses/{sha}"
    httpserver.expect_ordered_request(path, method="POST").respond_with_response(
        Response('{"message": "You have exceeded a secondary rate limit"}', status=status, headers=headers))
    httpserver.expect_ordered_request(path, method="POST").respond_with_json({}, status=then)


def _github_status_only(httpserver, **extra) -> dict:
    config = github_config(httpserver.url_for("/").rstrip("/"))
    config["github"].update(pr_comment=False, **extra)
    return config


@pytest.mark.parametrize("headers", [{"Retry-After": "1"}, {"x-ratelimit-remaining": "0"}])
def test_github_secondary_rate_limit_is_waited_as_told(httpserver, headers):
    if "x-ratelimit-remaining" in headers:
        headers = {**headers, "x-ratelimit-reset": str(int(time.time()) + 2)}  # the epoch second it resets
    _rate_limited(httpserver, 403, headers)
    started = time.monotonic()
    [delivery] = send_notifications(failing_report(), _github_status_only(httpserver),
                                    environ={"GITHUB_TOKEN": "t0ken-x", "GITHUB_REPOSITORY": "acme/fleet"})
    assert delivery.ok and delivery.attempts == 2, delivery
    assert time.monotonic() - started >= 0.9
    assert len(httpserver.log) == 2


def test_a_plain_403_is_an_answer_not_retried(httpserver):
    _rate_limited(httpserver, 403, {})
    [delivery] = send_notifications(failing_report(), _github_status_only(httpserver),
                                    environ={"GITHUB_TOKEN": "t0ken-x", "GITHUB_REPOSITORY": "acme/fleet"})
    assert not delivery.ok and "HTTP 403" in delivery.detail and "rate limited" not in delivery.detail
    assert len(httpserver.log) == 1


@pytest.mark.parametrize("status", [403, 429])
def test_a_wait_over_the_cap_is_not_waited_and_reported_undelivered(httpserver, status):
    _rate_limited(httpserver, status, {"Retry-After": "90"})
    started = time.monotonic()
    [delivery] = send_notifications(failing_report(), _github_status_only(httpserver, max_retry_after_s=5),
                                    environ={"GITHUB_TOKEN": "t0ken-x", "GITHUB_REPOSITORY": "acme/fleet"})
    assert time.monotonic() - started < 3 and len(httpserver.log) == 1
    assert not delivery.ok
    assert f"HTTP {status}" in delivery.detail
    assert "rate limited: the server asked to wait 90 s; this channel waits at most 5 s per answer" in delivery.detail


def test_slack_link_parts_are_escaped(httpserver):
    httpserver.expect_request(SLACK_PATH, method="POST").respond_with_data("ok")
    report = RunReport(status="failure", counts={"failed": 1}, failed_tests=(FailedTest("t::x", "failed", "boom"),),
                       run_url="https://ci.example.com/run?a=1&b=2|<!channel>",
                       report_url="https://ci.example.com/r>x|<!here>")
    [delivery] = send_notifications(report, slack_config(httpserver.url_for(SLACK_PATH)), environ={})
    assert delivery.ok, delivery
    text = json.loads(httpserver.log[0][0].get_data())["text"]
    assert "<https://ci.example.com/run?a=1&amp;b=2%7C&lt;!channel&gt;|CI run>" in text
    assert "<https://ci.example.com/r&gt;x%7C&lt;!here&gt;|test report>" in text
    assert "<!channel>" not in text and "<!here>" not in text


def test_flaky_tests_are_named_in_every_digest(httpserver, smtp_server):
    httpserver.expect_request(SLACK_PATH, method="POST").respond_with_data("ok")
    handler = SmtpHandler()
    port = smtp_server(handler)
    report = RunReport(status="success", counts={"passed": 4, "flaky": 1}, mode="standard",
                       flaky_tests=(FailedTest("tests/test_t.py::test_timing", "flaky", "passed on rerun"),))
    config = {**slack_config(httpserver.url_for(SLACK_PATH), notify_on=["success"]),
              **email_config(port, notify_on=["success"])}
    deliveries = send_notifications(report, config, environ={})
    assert all(d.ok for d in deliveries), deliveries
    text = json.loads(httpserver.log[0][0].get_data())["text"]
    assert "*Flaky (failed, then passed on rerun):* `tests/test_t.py::test_timing`" in text
    body = parse(handler.envelopes[0]).get_content()
    assert "Flaky tests (failed, then passed on rerun; they do not fail the run):\n* tests/test_t.py::test_timing" \
        in body.replace("\r\n", "\n")


class RefusingSmtpHandler(SmtpHandler):
    """Refuses one mailbox at RCPT TO, as a server does for an unknown user."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802 (aiosmtpd hook)
        if address == "gone@example.com":
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_each_recipient_is_handled_alone(smtp_server):
    handler = RefusingSmtpHandler()
    port = smtp_server(handler, enable_SMTPUTF8=False)  # a server without SMTPUTF8
    to = ["dev1@example.com", "jürgen@example.com", "gone@example.com", "dev2@example.com"]
    [delivery] = send_notifications(failing_report(), email_config(port, to=to), environ={})
    [envelope] = handler.envelopes
    assert envelope.rcpt_tos == ["dev1@example.com", "dev2@example.com"]  # the others still got it
    assert parse(envelope)["To"] == "dev1@example.com, gone@example.com, dev2@example.com"  # not the non-ASCII one
    assert not delivery.ok
    assert delivery.detail == (
        "sent to 2 of 4 recipient(s); not delivered to jürgen@example.com: a non-ASCII address, and the server "
        "does not offer SMTPUTF8; not delivered to gone@example.com: refused: 550 5.1.1 no such mailbox")


def test_a_non_ascii_recipient_is_delivered_where_the_server_offers_smtputf8(smtp_server):
    handler = SmtpHandler()
    port = smtp_server(handler, enable_SMTPUTF8=True)
    to = ["dev1@example.com", "jürgen@example.com"]
    [delivery] = send_notifications(failing_report(), email_config(port, to=to), environ={})
    assert delivery.ok and delivery.detail == "sent to 2 recipient(s)", delivery
    assert handler.envelopes[0].rcpt_tos == to
