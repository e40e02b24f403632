"""Support for the lifecycle tests: a real SMTP server (aiosmtpd) in a thread, a Kyso of our
own on the session's database (its own TSA key label), certificates with short validity,
and the real `kyso` command run against the same database."""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kyso.settings import LifecycleSettings, Settings, SmtpSettings, TsaSettings

KYSO = Path(sys.executable).parent / "kyso"


def free_port() -> int:
    """A port nothing listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sink:
    """What the SMTP server received, and how it answers RCPT TO (address -> reply)."""

    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        """Messages received for `address`, parsed (RFC 2047 headers decoded)."""
        return [email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[misc]
                for _, rcpts, raw in self.messages if address in rcpts]


class SmtpServer:
    """aiosmtpd's Controller on 127.0.0.1:`port` (a thread with its own event loop)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.sink = Sink()
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


def smtp_settings(port: int, **changes: Any) -> SmtpSettings:
    return replace(SmtpSettings(host="127.0.0.1", port=port, starttls=False,
                                from_address="kyso-test@kyso.example.vn", timeout=5), **changes)


def at_once(work: Callable[[], object], meet: threading.Barrier) -> tuple[list[object],
                                                                        list[BaseException]]:
    """`work` in meet.parties threads started together (`meet_here` inside it lines them up
    where a race would happen); what they returned and what they raised."""
    results: list[object] = []
    errors: list[BaseException] = []

    def one() -> None:
        try:
            results.append(work())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's assertions
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(meet.parties)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


def meet_here(meet: threading.Barrier) -> None:
    """Wait for the other threads of `at_once` here; go on alone once the barrier's timeout
    passes (the others are, rightly, waiting for this one)."""
    try:
        meet.wait()
    except threading.BrokenBarrierError:
        pass


def unique(prefix: str) -> str:
    return f"{prefix} {uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def app(kyso_app: Any) -> Iterator[Any]:
    """A Kyso on the session's database and token, with a TSA key label of its own (the
    other tests' TSA is left alone)."""
    from kyso.app import Kyso

    settings: Settings = kyso_app.settings
    own = replace(settings,
                  tsa=replace(TsaSettings(), key_label=f"lifecycle-tsa-{uuid.uuid4().hex[:6]}"),
                  lifecycle=LifecycleSettings(warn_days=(30, 7, 1), service_renew_days=30),
                  smtp=smtp_settings(free_port()))
    app = Kyso(own)
    yield app
    app.close()


def issue(authority: Any, *, organization: str, days: int, email_address: str | None = None,
          cn: str = "Trần Văn Minh", profile: str = "official-signing",
          ca_name: str = "issuing") -> Any:
    """A certificate of `profile` from a CSR, valid for `days` from now."""
    subject = f"CN={cn},O={organization},C=VN"
    emails = (email_address,) if email_address else ()
    request = authority.request_from_csr(profile, make_csr(), subject, emails=emails,
                                         validity_days=days)
    return authority.issue(ca_name, request)


def issue_service(authority: Any, key: Any, *, days: int, profile: str = "timestamping",
                  ca_name: str = "issuing") -> Any:
    """A service certificate (TSA) for an HSM key, as a ceremony would make it."""
    from ca.issuance import ApprovedRequest

    p = authority.profiles.get(profile)
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "Kyso Test Timestamping Unit"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Trung tâm Chuyển đổi số (TEST)"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
    ])
    request = ApprovedRequest(profile=p, subject=p.build_subject(name),
                              public_key=key.public_key(), validity_days=days,
                              kind="server-key")
    return authority.issue(ca_name, request)


def make_csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def write_config(settings: Settings, path: Path, *, smtp_port: int | None = None) -> Path:
    """A settings file for the real CLI pointing at the session's database and token."""
    hsm = settings.hsm
    lines = [f'data_dir = "{settings.data_dir}"',
             f'database_url = {json.dumps(settings.db_url)}',
             "[hsm]", f'module = "{hsm.module}"', f'token_label = "{hsm.token_label}"',
             f'pin_env = "{hsm.pin_env}"', f'so_pin_env = "{hsm.so_pin_env}"',
             f'softhsm2_conf = "{hsm.softhsm2_conf}"',
             "[tsa]", f'key_label = "lifecycle-cli-{uuid.uuid4().hex[:6]}"']
    if smtp_port is not None:
        lines += ["[smtp]", 'host = "127.0.0.1"', f"port = {smtp_port}", "starttls = false",
                  'from_address = "kyso-cli@kyso.example.vn"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def run_kyso(config: Path, *args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KYSO_CONFIG"}
    proc = subprocess.run([str(KYSO), "--config", str(config), *args], capture_output=True,
                          encoding="utf-8", env=env, timeout=120)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert proc.returncode == expect, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc
