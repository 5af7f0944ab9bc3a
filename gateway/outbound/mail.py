"""One mail to the SMTP server of ``SMTP_URL``: TLS verified, never a credential or a message in clear by accident.

``smtp://`` requires STARTTLS: a server that does not offer it gets nothing
(no ``MAIL FROM``), because a man in the middle who strips the offer would
otherwise read the message and the password.  ``?starttls=off`` (a local relay;
refused with credentials by config.py) sends in clear; ``smtps://`` is TLS from
the first byte.  Certificates are verified like every outbound connection
(the system store plus ``OUTBOUND_CA_FILE``, the host name checked).  The
stdlib's ``smtplib`` speaks the protocol; as with HTTP, a failure comes back as
a reason from a closed set, never as the library's text (it may quote the
server's greeting or the addresses).
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage

from config import SmtpServer
from gateway.outbound.http import SendResult
from gateway.outbound.tls import client_context

log = logging.getLogger("gateway.outbound")

# Why a mail was not sent, beyond the HTTP reasons it shares (timeout, tls, connect, protocol):
# the server offered no STARTTLS, refused the credentials, or refused the sender, a recipient or the data.
MAIL_FAILURE_REASONS = ("starttls", "auth", "rejected")


def send_mail(server: SmtpServer, message: EmailMessage, *, timeout: float, ca_file: str | None = None) -> SendResult:
    """Hand ``message`` to ``server`` once and report what happened; never raises for the server's fault."""
    try:
        return _send(server, message, timeout, ca_file)
    except smtplib.SMTPAuthenticationError:
        return SendResult(ok=False, reason="auth")
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
        return SendResult(ok=False, reason="rejected", status=getattr(exc, "smtp_code", None))
    except smtplib.SMTPConnectError:
        return SendResult(ok=False, reason="connect")
    except smtplib.SMTPResponseException as exc:
        return SendResult(ok=False, reason="rejected", status=exc.smtp_code)
    except (ssl.SSLError, ssl.CertificateError):  # before ValueError: a failed verification is both
        return SendResult(ok=False, reason="tls")
    except (smtplib.SMTPException, ValueError):  # a disconnect mid-way, an answer that is not SMTP
        return SendResult(ok=False, reason="protocol")
    except TimeoutError:
        return SendResult(ok=False, reason="timeout")
    except OSError:  # refused, unreachable, unresolvable
        return SendResult(ok=False, reason="connect")


def _send(server: SmtpServer, message: EmailMessage, timeout: float, ca_file: str | None) -> SendResult:
    client: smtplib.SMTP
    if server.security == "tls":
        client = smtplib.SMTP_SSL(server.host, server.port, timeout=timeout, context=client_context(ca_file))
    else:
        client = smtplib.SMTP(server.host, server.port, timeout=timeout)
    with client:  # QUIT on the way out, whatever happened
        client.ehlo()
        if server.security == "starttls":
            if not client.has_extn("starttls"):
                return SendResult(ok=False, reason="starttls")
            client.starttls(context=client_context(ca_file))
            client.ehlo()  # the capabilities again, now under TLS (RFC 3207)
        if server.username is not None:
            client.login(server.username, server.password or "")
        refused = client.send_message(message)
    if refused:  # some recipients took it: sending again would repeat it to them
        log.warning("the mail server refused %d of the message's recipients", len(refused))
    return SendResult(ok=True, status=250)
