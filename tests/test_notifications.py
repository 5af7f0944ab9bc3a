"""The notifications' configuration and their mail transport, without a database.

- the catalogue's ``notifications:`` and ``notify:`` (refused at load naming the field; ``on:``
  written bare, as YAML 1.1 reads it; URLs and secrets only through the variables named);
- a real SMTP server (aiosmtpd, certificates from trustme): STARTTLS required and verified,
  a server without STARTTLS refused before anything is sent, implicit TLS, a local relay in clear.
"""

from __future__ import annotations

import textwrap
from email.message import EmailMessage

import pytest

from gateway.catalogue import CatalogueError, parse_catalogue
from gateway.deliveries import render
from gateway.outbound import send_mail, slack
from tests.receivers import SmtpReceiver, tls_authority

CATALOGUE = textwrap.dedent(
    """
    commands:
      - name: report
        title: Nightly report
        kind: shell
        argv: ["echo", "hi"]
        notify: [ops-webhook]
    schedules:
      - name: nightly
        command: report
        cron: "0 3 * * *"
        notify: [ops-webhook, oncall-mail]
    notifications:
      - name: ops-webhook
        kind: webhook
        url_env: OPS_WEBHOOK_URL
        secret_env: OPS_WEBHOOK_SECRET
        on: [failed, timed_out, changed]
      - name: oncall-mail
        kind: email
        to: [oncall@example.com]
        on: [failed]
      - name: chat
        kind: slack
        url_env: OPS_SLACK_URL
        on: [failed]
    """
)


def test_the_designs_example_loads_with_on_written_bare():
    environ = {"OPS_WEBHOOK_URL": "https://hooks.example.com/x", "OPS_WEBHOOK_SECRET": "s3cret"}
    catalogue = parse_catalogue(CATALOGUE, environ)
    hook = catalogue.notifications["ops-webhook"]
    assert hook.on == ["failed", "timed_out", "changed"] and hook.on_change and hook.wants("failed")
    assert catalogue.commands["report"].notify == ["ops-webhook"]
    assert catalogue.schedules["nightly"].notify == ["ops-webhook", "oncall-mail"]
    assert catalogue.notification_targets["ops-webhook"].url == "https://hooks.example.com/x"
    assert catalogue.notification_targets["ops-webhook"].secret == b"s3cret"
    assert catalogue.unconfigured_notifications() == ["chat"]  # OPS_SLACK_URL is unset: not a crash
    assert catalogue.unconfigured_reason("chat") == "OPS_SLACK_URL is not set"
    assert "s3cret" not in repr(catalogue) and "hooks.example.com" not in repr(catalogue)


def test_a_secret_can_come_from_a_file(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    environ = {"OPS_WEBHOOK_URL": "https://x.example/", "OPS_WEBHOOK_SECRET_FILE": str(secret)}
    assert parse_catalogue(CATALOGUE, environ).notification_targets["ops-webhook"].secret == b"from-a-file"


def test_notify_does_not_change_a_commands_definition_digest():
    plain = parse_catalogue(CATALOGUE.replace("    notify: [ops-webhook]\n", "", 1), {})
    told = parse_catalogue(CATALOGUE, {})
    assert plain.commands["report"].definition_sha256() == told.commands["report"].definition_sha256()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("kind: webhook", "kind: pager"), "notification 'ops-webhook' field kind:"),
        (("url_env: OPS_WEBHOOK_URL", "url: https://hooks.example.com/x"), "notification 'ops-webhook' field url:"),
        (("    url_env: OPS_WEBHOOK_URL\n", ""), "notification 'ops-webhook': url_env: required for a webhook"),
        (
            ("    secret_env: OPS_WEBHOOK_SECRET\n", ""),
            "notification 'ops-webhook': secret_env: required for a webhook",
        ),
        (("url_env: OPS_WEBHOOK_URL", "url_env: https://x"), "notification 'ops-webhook' field url_env:"),
        (("on: [failed, timed_out, changed]", "on: [failed, exploded]"), "field on: unknown outcome 'exploded'"),
        (("on: [failed, timed_out, changed]", "on: []"), "notification 'ops-webhook' field on: name at least one"),
        (("to: [oncall@example.com]", "to: ['a@example.com, b@example.org']"), "field to: not a plain mail address"),
        (("to: [oncall@example.com]", 'to: ["a@example.com\\r\\nBcc: b@x.org"]'), "field to: not a plain mail address"),
        (("    to: [oncall@example.com]\n", ""), "notification 'oncall-mail': to: required for an email"),
        (
            ("url_env: OPS_SLACK_URL", "url_env: OPS_SLACK_URL\n    secret_env: X"),
            "'chat': secret_env: only for webhook",
        ),
        (("notify: [ops-webhook]", "notify: [pager]"), "command 'report' field notify: unknown notification 'pager'"),
        (("notify: [ops-webhook, oncall-mail]", "notify: [nobody]"), "schedule 'nightly' field notify: unknown"),
        (("notify: [ops-webhook, oncall-mail]", "notify: [chat, chat]"), "schedule 'nightly' field notify: 'chat' is"),
        (("  - name: chat", "  - name: ops-webhook"), "notification 'ops-webhook' field name: defined twice"),
    ],
)
def test_a_bad_notification_refuses_the_catalogue_naming_the_field(change, expected):
    before, after = change
    assert before in CATALOGUE
    with pytest.raises(CatalogueError) as caught:
        parse_catalogue(CATALOGUE.replace(before, after, 1), {})
    assert expected in str(caught.value)


# --- a real SMTP server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def authority(tmp_path_factory):
    return tls_authority(tmp_path_factory.mktemp("smtp-ca"))


def a_message() -> EmailMessage:
    about = render.Summary(
        title="Nightly report", outcome="failed", schedule="nightly", url="http://localhost/runs/x",
        excerpt="<b>boom</b>", run={"exit_code": 2},
    )  # fmt: skip
    return render.email_message("d-1", about, "gateway@example.com", ["oncall@example.com"])


def server(url: str, username: str | None = None, password: str | None = None):
    from config import SmtpServer, parse_smtp_url

    parsed = parse_smtp_url(url)
    assert parsed is not None
    return SmtpServer(parsed.host, parsed.port, parsed.security, username, password)


def test_starttls_is_used_and_verified_and_the_login_travels_inside_it(authority):
    smtp = SmtpReceiver("starttls", tls=authority.server_context, credentials=("gateway", "pw")).start()
    try:
        result = send_mail(server(smtp.url(), "gateway", "pw"), a_message(), timeout=5, ca_file=authority.ca_file)
    finally:
        smtp.stop()
    assert result.ok
    [mail] = smtp.mails
    assert mail.over_tls and mail.login == "gateway" and mail.recipients == ["oncall@example.com"]
    message = mail.message()
    assert message["Subject"] == "Nightly report: failed (schedule nightly)"
    assert message["Message-ID"] == "<d-1@example.com>"
    assert "&lt;b&gt;boom&lt;/b&gt;" in message.get_body(("html",)).get_content()
    assert "<b>boom</b>" in message.get_body(("plain",)).get_content()


def test_a_server_without_starttls_gets_nothing(authority):
    smtp = SmtpReceiver("plain").start()
    try:
        result = send_mail(server(smtp.url(), "gateway", "pw"), a_message(), timeout=5, ca_file=authority.ca_file)
    finally:
        smtp.stop()
    assert not result.ok and result.reason == "starttls"
    assert smtp.mail_commands == 0 and smtp.mails == []  # not even MAIL FROM, let alone the password


def test_a_certificate_the_gateway_does_not_trust_is_refused(authority, tmp_path):
    smtp = SmtpReceiver("starttls", tls=authority.server_context).start()
    try:
        result = send_mail(server(smtp.url()), a_message(), timeout=5, ca_file=None)
    finally:
        smtp.stop()
    assert not result.ok and result.reason == "tls" and smtp.mails == []


def test_smtps_is_tls_from_the_first_byte(authority):
    smtp = SmtpReceiver("implicit", tls=authority.server_context).start()
    try:
        result = send_mail(server(smtp.url("smtps")), a_message(), timeout=5, ca_file=authority.ca_file)
    finally:
        smtp.stop()
    assert result.ok and [mail.over_tls for mail in smtp.mails] == [True]


def test_a_local_relay_in_clear_only_when_asked_for():
    smtp = SmtpReceiver("plain").start()
    try:
        result = send_mail(server(smtp.url(query="starttls=off")), a_message(), timeout=5)
    finally:
        smtp.stop()
    assert result.ok and [mail.over_tls for mail in smtp.mails] == [False]


def test_wrong_credentials_and_no_server_are_reasons_not_messages(authority):
    smtp = SmtpReceiver("starttls", tls=authority.server_context, credentials=("gateway", "pw")).start()
    try:
        wrong = send_mail(server(smtp.url(), "gateway", "nope"), a_message(), timeout=5, ca_file=authority.ca_file)
    finally:
        smtp.stop()
    assert (wrong.ok, wrong.reason) == (False, "auth") and smtp.mails == []
    gone = send_mail(server(smtp.url()), a_message(), timeout=2, ca_file=authority.ca_file)
    assert (gone.ok, gone.reason) == (False, "connect")


# --- what each message is made of -----------------------------------------------------------


def test_slack_text_cannot_mention_link_or_leave_its_code_block():
    about = render.summary(
        {"title": "Report <!here>", "run": {"status": "failed"}, "url": "https://ops.example.com/runs/1",
         "excerpt": "<!channel> <https://evil.example|click> & ```\n*bold*"}
    )  # fmt: skip
    text = render.slack_text(about)
    assert "<!" not in text and "<https://evil" not in text
    assert text.count("<") == 1 and "<https://ops.example.com/runs/1|Open the run>" in text  # our one link
    assert text.count("```") == 2 and slack.escape("a<b>&c") == "a&lt;b&gt;&amp;c"


def test_a_subject_is_one_line_from_the_catalogue_and_the_outcome():
    about = render.summary({"title": "Report\r\nBcc: x@y.org\u2028", "schedule": "nightly", "run": {"status": "lost"}})
    assert render.subject(about) == "Report Bcc: x@y.org: lost (schedule nightly)"


def test_validate_names_the_notifications_and_those_that_cannot_be_sent_here(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from gateway.cli.commands import validate

    path = tmp_path / "commands.yaml"
    path.write_text(CATALOGUE)
    for name in ("OPS_WEBHOOK_URL", "OPS_WEBHOOK_SECRET", "OPS_SLACK_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPS_SLACK_URL", "https://hooks.slack.example/services/x")
    result = CliRunner().invoke(validate, [str(path)])
    assert result.exit_code == 0, result.output
    assert "notifications: ops-webhook, oncall-mail, chat" in result.output
    assert "note: notification ops-webhook cannot be sent from here (OPS_WEBHOOK_URL is not set)" in result.output
    assert "hooks.slack.example" not in result.output
