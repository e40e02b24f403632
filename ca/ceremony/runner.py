"""Check and run key ceremonies.

`check` validates everything that can be validated without the HSM's keys: the file, the
profile and key spec, the subject, the outputs (none may exist), the token's presence, the
custodians' shares (each against its commitment) and a lint of every certificate drafted with
a probe key. `run` checks again, asks for confirmation, and then executes step by step: every
step is entered in the audit log *before* it happens (an audit failure stops the ceremony),
every output is created exclusively (never overwritten), and the transcript is signed by the
HSM's audit key and entered in the audit log, which is then sealed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ca import audit, store
from ca.authority import Authority
from ca.ceremony import quorum as q
from ca.ceremony.record import Transcript, render_text, sha256_file, signed_document
from ca.ceremony.spec import Ceremony
from ca.errors import CAError, CeremonyRefused
from ca.issuance import ApprovedRequest, throwaway_key
from ca.models import QuorumRecord


@dataclass
class CeremonyContext:
    """What a ceremony needs from the composition root (kyso.app)."""

    authority: Authority
    sessions: sessionmaker[Session]
    readers: sessionmaker[Session]
    module: str
    online_token: Callable[[], Any]
    online_token_label: str
    so_pin: Callable[[], str]
    open_token: Callable[[str, str], Any]  # (label, pin) -> hsm.Token
    audit_signer: Callable[[], Any]  # -> audit.AuditSigner (key made if missing)
    publish_dir: Path
    actor: str = "operator"
    echo: Callable[[str], None] = print


@dataclass
class Plan:
    ceremony: Ceremony
    steps: list[str]
    quorum: q.QuorumCheck | None = None
    quorum_token: str | None = None
    custodians_present: list[dict[str, Any]] = field(default_factory=list)
    activation_pin: str | None = None

    def render(self) -> str:
        c = self.ceremony
        lines = [f"{c.type} ceremony {c.name!r}" + (f": {c.description}" if c.description
                                                   else ""),
                 f"file: {c.source} (SHA-256 {c.source_sha256[:16]}...)"]
        if self.quorum is not None:
            lines.append(f"quorum: token {self.quorum_token!r} needs {self.quorum.threshold} "
                         f"of {self.quorum.total} shares; present: "
                         + ", ".join(f"{x['custodian']} (share {x['index']})"
                                     for x in self.custodians_present))
        if c.witnesses:
            lines.append(f"witnesses: {', '.join(c.witnesses)}")
        lines.append("plan:")
        lines += [f"  {i}. {s}" for i, s in enumerate(self.steps, 1)]
        return "\n".join(lines)


def _quorum(readers: sessionmaker[Session], token_label: str) -> q.QuorumCheck | None:
    with readers() as s:
        row = s.scalars(select(QuorumRecord).where(QuorumRecord.token_label == token_label)
                        ).first()
        if row is None:
            return None
        return q.QuorumCheck(row.token_label, row.threshold, row.total, row.salt,
                             row.secret_check, json.loads(row.shares))


class CeremonyRunner:
    def __init__(self, ctx: CeremonyContext) -> None:
        self.ctx = ctx

    # -- check ----------------------------------------------------------------------------

    def check(self, c: Ceremony, shares: Sequence[q.Share] = (),
              share_files: Sequence[Path] = (), *, require_shares: bool = True) -> Plan:
        """Validate the ceremony without using any HSM key; returns the plan.

        With `require_shares=False` and no share given, a quorum is only announced (for a
        dry `check` before the custodians arrive); any share given is always checked.
        """
        for role, path in c.all_outputs():
            if path.exists():
                raise CeremonyRefused(f"output {role} {path} already exists; a ceremony never "
                                      "overwrites (move it away or name another path)")
        steps: list[str] = []
        plan = Plan(c, steps)
        key_token = c.token.label if c.token else self.ctx.online_token_label
        if c.token is not None:
            self._check_token(c.token.label, c.token.module)
        if c.type == "root":
            self._check_root(c, steps)
        else:
            signer_token = self._signer_token(c)
            if signer_token is not None:
                quorum = _quorum(self.ctx.readers, signer_token)
                if quorum is not None:
                    plan.quorum, plan.quorum_token = quorum, signer_token
                    parsed = list(shares) + [q.read_share_file(p, signer_token)
                                             for p in share_files]
                    if parsed or require_shares:
                        plan.activation_pin, plan.custodians_present = q.combine(quorum,
                                                                                 parsed)
                    steps.append(f"combine {quorum.threshold} of {quorum.total} custodian "
                                 f"shares; log in to token {signer_token!r} with the "
                                 "activation PIN")
                elif signer_token != self.ctx.online_token_label:
                    raise CeremonyRefused(
                        f"token {signer_token!r} has no quorum and is not the online token; "
                        "its key can only be used after a root ceremony set up its quorum")
            getattr(self, "_check_" + c.type.replace("-", "_"))(c, steps, key_token)
        steps.append("sign the transcript with the HSM audit key, enter it in the audit log, "
                     f"seal the log; write {c.record_path} and its .txt")
        return plan

    def _check_token(self, label: str, module: str | None) -> None:
        from hsm import token_present

        if not token_present(module or self.ctx.module, label):
            raise CeremonyRefused(f"HSM token {label!r} is not reachable (no such token in "
                                  f"module {module or self.ctx.module})")

    def _signer_token(self, c: Ceremony) -> str | None:
        """The token whose key this ceremony uses (None: it uses no existing key)."""
        if c.type == "key":
            return c.token.label if c.token else None
        assert c.parent is not None
        with self.ctx.readers() as s:
            record = store.get_ca(s, c.parent)
            return record.token_label or self.ctx.online_token_label

    def _check_root(self, c: Ceremony, steps: list[str]) -> None:
        assert c.ca is not None and c.token is not None
        if c.token.label == self.ctx.online_token_label:
            raise CeremonyRefused("the root's token must not be the online token: its PIN "
                                  "would be in the settings instead of with the custodians")
        if _quorum(self.ctx.readers, c.token.label) is not None:
            raise CeremonyRefused(f"token {c.token.label!r} already has a quorum; a root "
                                  "ceremony runs once per token")
        self.ctx.authority.create_root(c.ca.name, c.ca.subject, key_spec=c.ca.key,
                                       validity_days=c.ca.validity_days, profile=c.ca.profile,
                                       dry_run=True)
        steps += [
            f"split a new activation secret {c.threshold}-of-{len(c.custodians)} among "
            + ", ".join(x.name for x in c.custodians),
            f"set the user PIN of token {c.token.label!r} (as SO) to the activation PIN",
            f"generate the root key ({c.ca.key}) on token {c.token.label!r}, label "
            f"ca-{c.ca.name}",
            f"self-sign root CA {c.ca.name!r}: {c.ca.subject} (profile {c.ca.profile}); lint "
            "before and after signing",
            f"write the certificate to {c.outputs['certificate']}",
        ]

    def _check_intermediate(self, c: Ceremony, steps: list[str], key_token: str) -> None:
        assert c.ca is not None
        self.ctx.authority.create_issuing(
            c.ca.name, c.ca.subject, parent=c.parent or "", key_spec=c.ca.key,
            validity_days=c.ca.validity_days, path_length=c.ca.path_length,
            profile=c.ca.profile, dry_run=True)
        steps += [
            f"generate the issuing CA key ({c.ca.key}) on token {key_token!r}, label "
            f"ca-{c.ca.name}",
            f"sign issuing CA {c.ca.name!r}: {c.ca.subject} with CA {c.parent!r}; lint before "
            "and after signing",
            f"write the certificate to {c.outputs['certificate']}"
            + (f" and the chain to {c.outputs['chain']}" if "chain" in c.outputs else ""),
        ]

    def _check_cross_sign(self, c: Ceremony, steps: list[str], key_token: str) -> None:
        assert c.ca is not None and c.input_certificate is not None
        cert = _load_certificate(c.input_certificate)
        self.ctx.authority.cross_sign(c.parent or "", cert, profile=c.ca.profile,
                                      validity_days=c.ca.validity_days,
                                      path_length=c.ca.path_length, dry_run=True)
        steps += [f"cross-sign {cert.subject.rfc4514_string()} (key of "
                  f"{c.input_certificate.name}) with CA {c.parent!r}; lint before and after",
                  f"write the certificate to {c.outputs['certificate']}"]

    def _check_key(self, c: Ceremony, steps: list[str], key_token: str) -> None:
        from hsm import KeySpec

        assert c.key_spec is not None
        try:
            KeySpec.parse(c.key_spec)
        except ValueError as exc:
            raise CeremonyRefused(f"key.spec: {exc}") from None
        if c.csr_subject is not None:
            _parse_name(c.csr_subject)
        steps += [f"generate a {c.key_spec} key on token {key_token!r}, label {c.key_label}",
                  f"write its public key to {c.outputs['public_key']}"]
        if c.csr_subject:
            steps.append(f"sign a CSR for {c.csr_subject} with it; write {c.outputs['csr']}")

    def _check_crl(self, c: Ceremony, steps: list[str], key_token: str) -> None:
        self.ctx.authority.issuer_preview(c.parent or "")
        steps += [f"sign the next full CRL of CA {c.parent!r} (nextUpdate in "
                  f"{c.next_update_days} days); lint before and after",
                  f"write it to {c.outputs['crl']} and publish it as crl/{c.parent}.crl"]

    def _check_service_certs(self, c: Ceremony, steps: list[str], key_token: str) -> None:
        for svc in c.services:
            request = self._service_request(svc, throwaway_key(svc.key).public_key())
            self.ctx.authority.check_issue(c.parent or "", request)
            steps += [f"generate a {svc.key} key on token {key_token!r}, label {svc.key_label}",
                      f"issue a {svc.profile} certificate for {svc.subject} from CA "
                      f"{c.parent!r}; write {svc.certificate}"]

    def _service_request(self, svc: Any, public_key: Any) -> ApprovedRequest:
        from hsm import KeySpec

        try:
            KeySpec.parse(svc.key)
        except ValueError as exc:
            raise CeremonyRefused(f"{svc.key_label}: {exc}") from None
        profile = self.ctx.authority.profiles.get(svc.profile)
        return ApprovedRequest(profile=profile, subject=profile.build_subject(svc.subject),
                               public_key=public_key, validity_days=svc.validity_days,
                               kind="server-key", requested_by=self.ctx.actor,
                               approved_by=self.ctx.actor)

    # -- run ------------------------------------------------------------------------------

    def run(self, c: Ceremony, shares: Sequence[q.Share] = (),
            share_files: Sequence[Path] = (),
            confirm: Callable[[Plan], bool] = lambda plan: True) -> dict[str, Any]:
        """Check, confirm, execute; returns the signed record document (also written)."""
        plan = self.check(c, shares, share_files)
        if not confirm(plan):
            raise CeremonyRefused("ceremony not confirmed; nothing was done")
        t = Transcript(c.type, c.name, str(c.source), c.source_sha256,
                       c.operator or self.ctx.actor, list(c.witnesses))
        t.custodians = [{**x, "role": "present"} for x in plan.custodians_present]
        obj = f"ceremony:{c.name}"
        self._audit("ceremony.start", obj, details={"type": c.type, "file": str(c.source),
                                                    "file_sha256": c.source_sha256})
        t.step("ceremony started; plan checked", plan=plan.steps)
        signer_token = None
        try:
            if plan.activation_pin is not None:
                assert plan.quorum_token is not None
                self._audit("ceremony.quorum", obj, details={
                    "token": plan.quorum_token, "custodians": plan.custodians_present})
                signer_token = self.ctx.open_token(plan.quorum_token, plan.activation_pin)
                t.step(f"quorum met: logged in to token {plan.quorum_token!r}",
                       custodians=[x["custodian"] for x in plan.custodians_present])
            getattr(self, "_run_" + c.type.replace("-", "_"))(c, t, signer_token)
            t.outcome = "success"
        except Exception as exc:  # recorded in the transcript, then surfaced as it is
            t.outcome = "failed"
            t.error = str(exc) if isinstance(exc, CAError | OSError) else (
                f"{type(exc).__name__}: {exc}")
            t.step("ceremony stopped", error=t.error)
            if signer_token is not None:
                signer_token.close()
                signer_token = None
            try:
                self._finish(c, t, obj)
            except Exception as record_exc:  # the original error matters more
                self.ctx.echo(f"warning: the failed ceremony's record could not be written "
                              f"({record_exc})")
            raise
        finally:
            if signer_token is not None:
                signer_token.close()
        return self._finish(c, t, obj)

    def _audit(self, action: str, obj: str, outcome: str = "success",
               details: dict[str, Any] | None = None) -> None:
        """Enter a ceremony step in the audit log before it happens (fail closed)."""
        with self.ctx.sessions.begin() as s:
            audit.record(s, actor=self.ctx.actor, action=action, obj=obj, outcome=outcome,
                         details=details)

    def _finish(self, c: Ceremony, t: Transcript, obj: str) -> dict[str, Any]:
        from datetime import UTC, datetime

        t.finished_at = datetime.now(UTC).isoformat(timespec="seconds")
        signer = self.ctx.audit_signer()
        record = t.as_dict()
        document = signed_document(record, signer)
        path = c.record_path
        _write_new(path, json.dumps(document, ensure_ascii=False, indent=2).encode() + b"\n")
        _write_new(path.with_suffix(".txt"), render_text(document).encode())
        with self.ctx.sessions.begin() as s:
            audit.record(s, actor=self.ctx.actor, action="ceremony.finish", obj=obj,
                         outcome="success" if t.outcome == "success" else "failure",
                         details={"type": c.type, "record": str(path),
                                  "record_sha256": document["signature"]["record_sha256"],
                                  "error": t.error})
            audit.seal(s, signer, reason="ceremony", actor=self.ctx.actor)
        self.ctx.echo(f"record: {path} (signed; text version {path.with_suffix('.txt')})")
        return document

    def _write(self, t: Transcript, role: str, path: Path, data: bytes, *,
               mode: int = 0o644) -> None:
        _write_new(path, data, mode=mode)
        t.output(role, path)
        self.ctx.echo(f"wrote {role}: {path}")

    # -- the ceremony types -----------------------------------------------------------------

    def _run_root(self, c: Ceremony, t: Transcript, _: Any) -> None:
        assert c.ca is not None and c.token is not None and c.threshold is not None
        label = c.token.label
        split = q.split(label, c.name, [x.name for x in c.custodians], c.threshold,
                        demo=c.demo)
        obj = f"ceremony:{c.name}"
        self._audit("ceremony.quorum.create", obj, details={
            "token": label, "threshold": c.threshold,
            "custodians": [x.name for x in c.custodians]})
        with self.ctx.sessions.begin() as s:
            s.add(QuorumRecord(token_label=label, ceremony=c.name, threshold=c.threshold,
                               total=len(c.custodians), salt=split.salt,
                               secret_check=split.secret_check, shares=split.shares_json(),
                               created_at=self.ctx.authority.clock()))
        t.step(f"activation secret split {c.threshold}-of-{len(c.custodians)}",
               commitments=[x["commitment"] for x in split.commitments])
        for custodian, share in zip(c.custodians, split.shares, strict=True):
            t.custodians.append({"index": share.index, "custodian": custodian.name,
                                 "role": "share issued"})
            if custodian.share_file is not None:
                self._write(t, f"share:{custodian.name}", custodian.share_file,
                            share.text.encode(), mode=0o600)
            else:
                self.ctx.echo(f"\n--- share for {custodian.name} (shown once; copy it now) ---"
                              f"\n{share.text}--- end of share ---\n")
        from hsm import init_user_pin

        self._audit("ceremony.token.activate", obj, details={"token": label})
        init_user_pin(c.token.module or self.ctx.module, label, self.ctx.so_pin(),
                      split.activation_pin)
        t.step(f"user PIN of token {label!r} set to the activation PIN (as SO)")
        root_token = self.ctx.open_token(label, split.activation_pin)
        try:
            self._audit("ceremony.key.generate", obj, details={
                "token": label, "label": f"ca-{c.ca.name}", "spec": c.ca.key})
            record = self.ctx.authority.create_root(
                c.ca.name, c.ca.subject, key_spec=c.ca.key, validity_days=c.ca.validity_days,
                profile=c.ca.profile, token=root_token, actor=self.ctx.actor)
        finally:
            root_token.close()
        assert record is not None
        cert = x509.load_der_x509_certificate(record.cert_der)
        t.step(f"root key generated on {label!r} and root CA {c.ca.name!r} self-signed; "
               "linted before and after signing", serial=record.serial)
        t.certificate("root", cert)
        self._write(t, "certificate", c.outputs["certificate"], _pem(cert))

    def _run_intermediate(self, c: Ceremony, t: Transcript, signer_token: Any) -> None:
        assert c.ca is not None and c.parent is not None
        key_token = self._key_token(c)
        self._audit("ceremony.key.generate", f"ceremony:{c.name}", details={
            "token": str(key_token.label), "label": f"ca-{c.ca.name}", "spec": c.ca.key,
            "signer": c.parent})
        record = self.ctx.authority.create_issuing(
            c.ca.name, c.ca.subject, parent=c.parent, key_spec=c.ca.key,
            validity_days=c.ca.validity_days, path_length=c.ca.path_length,
            profile=c.ca.profile, token=key_token, parent_token=signer_token,
            actor=self.ctx.actor)
        assert record is not None
        cert = x509.load_der_x509_certificate(record.cert_der)
        t.step(f"issuing CA key generated on {key_token.label!r}; certificate signed by "
               f"{c.parent!r}; linted before and after signing", serial=record.serial)
        t.certificate("issuing-ca", cert)
        self._write(t, "certificate", c.outputs["certificate"], _pem(cert))
        if "chain" in c.outputs:
            chain = b"".join(_pem(x) for x in self.ctx.authority.chain(c.ca.name))
            self._write(t, "chain", c.outputs["chain"], chain)

    def _run_cross_sign(self, c: Ceremony, t: Transcript, signer_token: Any) -> None:
        assert c.ca is not None and c.input_certificate is not None
        source = _load_certificate(c.input_certificate)
        t.step(f"certificate to cross-sign read from {c.input_certificate}",
               sha256=sha256_file(c.input_certificate))
        cert = self.ctx.authority.cross_sign(
            c.parent or "", source, profile=c.ca.profile, validity_days=c.ca.validity_days,
            path_length=c.ca.path_length, signer_token=signer_token, actor=self.ctx.actor)
        assert cert is not None
        t.step(f"cross-certificate signed by {c.parent!r}; linted before and after signing")
        t.certificate("cross-certificate", cert)
        self._write(t, "certificate", c.outputs["certificate"], _pem(cert))

    def _run_key(self, c: Ceremony, t: Transcript, signer_token: Any) -> None:
        from hsm import KeySpec

        assert c.key_spec is not None and c.key_label is not None
        token = signer_token or self._key_token(c)
        self._audit("ceremony.key.generate", f"ceremony:{c.name}", details={
            "token": str(token.label), "label": c.key_label, "spec": c.key_spec})
        key = token.generate_key_pair(KeySpec.parse(c.key_spec), c.key_label)
        t.step(f"{c.key_spec} key generated on token {token.label!r}, label {c.key_label}")
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        self._write(t, "public_key", c.outputs["public_key"], public)
        if c.csr_subject is not None:
            from ca.issuance import signature_hash

            csr = x509.CertificateSigningRequestBuilder().subject_name(
                _parse_name(c.csr_subject)).sign(key, signature_hash(key))
            t.step("CSR signed with the new key")
            self._write(t, "csr", c.outputs["csr"],
                        csr.public_bytes(serialization.Encoding.PEM))

    def _run_crl(self, c: Ceremony, t: Transcript, signer_token: Any) -> None:
        from ca.crl import generate_full_crl

        assert c.parent is not None and c.next_update_days is not None
        a = self.ctx.authority
        issuer = a.issuer(c.parent, signer_token)
        crl = generate_full_crl(self.ctx.sessions, issuer, now=a.clock(),
                                next_update=timedelta(days=c.next_update_days),
                                actor=self.ctx.actor, lint=a.lint,
                                audit_details={"ceremony": c.name})
        t.step(f"CRL number {crl.number} of {c.parent!r} signed ({crl.entries} entries, "
               f"next update {crl.next_update.isoformat()}); linted before and after")
        self._write(t, "crl", c.outputs["crl"], crl.der)
        published = self.ctx.publish_dir / "crl" / f"{c.parent}.crl"
        published.parent.mkdir(parents=True, exist_ok=True)
        tmp = published.with_suffix(".crl.tmp")
        tmp.write_bytes(crl.der)
        os.replace(tmp, published)
        t.step(f"published as {published}")

    def _run_service_certs(self, c: Ceremony, t: Transcript, signer_token: Any) -> None:
        from hsm import KeySpec

        key_token = self._key_token(c)
        for svc in c.services:
            self._audit("ceremony.key.generate", f"ceremony:{c.name}", details={
                "token": str(key_token.label), "label": svc.key_label, "spec": svc.key,
                "profile": svc.profile})
            key = key_token.generate_key_pair(KeySpec.parse(svc.key), svc.key_label)
            issued = self.ctx.authority.issue(
                c.parent or "", self._service_request(svc, key.public_key()),
                actor=self.ctx.actor, issuer_token=signer_token)
            if self.ctx.authority.lint:  # and after signing, as for every ceremony output
                from ca.issuance import check_lint
                from ca.lint import lint_certificate

                der = issued.certificate.public_bytes(serialization.Encoding.DER)
                check_lint(der, lint_certificate(der))
            t.step(f"{svc.profile} key {svc.key_label} generated and certificate issued by "
                   f"{c.parent!r}; linted before and after signing", serial=issued.serial)
            t.certificate(svc.profile, issued.certificate)
            self._write(t, f"certificate:{svc.key_label}", svc.certificate, issued.pem)

    def _key_token(self, c: Ceremony) -> Any:
        if c.token is None or c.token.label == self.ctx.online_token_label:
            return self.ctx.online_token()
        raise CeremonyRefused(f"token {c.token.label!r} is neither the online token nor "
                              "opened by this ceremony's quorum")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_new(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Create a file that must not exist yet (O_EXCL): a ceremony never overwrites."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise CeremonyRefused(f"{path} already exists; a ceremony never overwrites") from None
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _load_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CeremonyRefused(f"cannot read certificate {path}: {exc.strerror}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise CeremonyRefused(f"{path} is not an X.509 certificate (PEM or DER)") from None


def _parse_name(text: str) -> x509.Name:
    from ca.profiles import parse_subject

    try:
        return parse_subject(text)
    except (ValueError, CAError) as exc:
        raise CeremonyRefused(f"subject {text!r}: {exc}") from None


__all__ = ["CeremonyContext", "CeremonyRunner", "Plan"]
