"""Officials' certificate requests (ca/requests.py): filed, then approved (issue first, revoke
the old certificate after) or rejected (a key made for it retires); refusals change nothing."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, update

from ca import requests, store
from ca.errors import (
    InvalidRequest,
    NotFound,
    PinIncorrect,
    RequestDecided,
    RequestPending,
    StateConflict,
    SubjectRejected,
)
from ca.issuance import spki_sha256
from ca.models import AuditEventRecord, CertificateRecord, OfficialKeyRecord, OfficialRequestRecord

PIN = "246813579"
DOCUMENT = "Quyết định số 45/QĐ-UBND".encode()
OPERATOR = "account:operator-1"


def _add(authority, name: str):  # type: ignore[no-untyped-def]
    new = authority.add_official(
        pin=PIN, name=name, organization="Ủy ban nhân dân phường Bến Thành", unit="Văn phòng",
        locality="Thành phố Hồ Chí Minh", email=f"{abs(hash(name)) % 10**6}@benthanh.gov.vn",
        title="Chuyên viên", ca_name="issuing")
    return new.official_id, new.certificate.serial


@pytest.fixture(scope="module")
def official_a(kyso_app):  # type: ignore[no-untyped-def]
    return _add(kyso_app.authority, "Nguyễn Văn An")


@pytest.fixture(scope="module")
def official_b(kyso_app):  # type: ignore[no-untyped-def]
    return _add(kyso_app.authority, "Lê Thị Bích")


@pytest.fixture(scope="module")
def official_c(kyso_app):  # type: ignore[no-untyped-def]
    return _add(kyso_app.authority, "Phạm Minh Châu")


def _audit(kyso_app, obj: str) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with kyso_app.readers() as s:
        rows = s.execute(select(AuditEventRecord.action, AuditEventRecord.outcome)
                         .where(AuditEventRecord.object == obj)
                         .order_by(AuditEventRecord.seq)).all()
    return [(r[0], r[1]) for r in rows]


def _keys(kyso_app, official_id: int) -> dict[int, str]:  # type: ignore[no-untyped-def]
    with kyso_app.readers() as s:
        return {k.id: k.status for k in s.scalars(
            select(OfficialKeyRecord).where(OfficialKeyRecord.official_id == official_id))}


def _cert_count(kyso_app) -> int:  # type: ignore[no-untyped-def]
    with kyso_app.readers() as s:
        return int(s.scalar(select(func.count()).select_from(CertificateRecord)))


def test_renewal_same_key_issues_then_revokes_superseded(kyso_app, official_a):
    authority = kyso_app.authority
    official_id, serial = official_a
    filed = requests.file_renewal(authority, serial, actor="account:an",
                                  official_id=official_id)
    assert filed.status == "pending" and filed.kind == "renewal" and filed.serial == serial
    assert filed.content["name"] == "Nguyễn Văn An" and filed.key_choice == "same"
    assert authority.certificate(serial).status == "valid"  # nothing happens before approval
    with pytest.raises(RequestPending):
        requests.file_renewal(authority, serial, actor="account:an", official_id=official_id)
    with pytest.raises(RequestPending):  # an operator cannot file a second one either
        requests.file_change(authority, serial, {"title": "Phó Chánh Văn phòng"},
                             actor=OPERATOR, filed_via="operator")

    done = requests.approve(authority, filed.id, actor=OPERATOR)
    assert done.status == "approved" and done.new_serial and done.decided_by == OPERATOR
    old, new = authority.certificate(serial), authority.certificate(done.new_serial)
    assert old.status == "revoked" and old.revocation_reason == "superseded"
    assert new.status == "valid" and new.predecessor_id == old.id
    assert new.spki_sha256 == old.spki_sha256 and new.subject == old.subject
    assert new.official_key_id == old.official_key_id
    assert new.issued_at is not None and old.revoked_at is not None
    assert new.issued_at <= old.revoked_at  # issued first, revoked after
    cert = x509.load_der_x509_certificate(new.cert_der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == [filed.content["email"]]
    assert _audit(kyso_app, f"request:{filed.id}") == [("request.file", "success"),
                                                       ("request.approve", "success")]
    assert ("certificate.revoke", "success") in _audit(kyso_app, f"cert:{serial}")
    with pytest.raises(RequestDecided):
        requests.approve(authority, filed.id, actor=OPERATOR)
    with pytest.raises(RequestDecided):
        requests.reject(authority, filed.id, "muộn", actor=OPERATOR)
    with pytest.raises(StateConflict):  # the old certificate is revoked now
        requests.file_renewal(authority, serial, actor="account:an", official_id=official_id)


def test_change_with_new_key_changes_affiliation(kyso_app, official_b):
    authority = kyso_app.authority
    official_id, serial = official_b
    before = _keys(kyso_app, official_id)
    filed = requests.file_change(
        authority, serial, {"organization": "Ủy ban nhân dân phường Sài Gòn",
                            "title": "Phó Chánh Văn phòng", "unit": ""},
        actor="account:bich", official_id=official_id, key="new", pin=PIN)
    keys = _keys(kyso_app, official_id)
    (new_key,) = set(keys) - set(before)
    assert keys[new_key] == "pending"
    with kyso_app.readers() as s:
        assert store.active_official_key(s, official_id).id != new_key
    # Until approval the official still signs with the old key and certificate.
    old_cert = x509.load_der_x509_certificate(authority.certificate(serial).cert_der)
    with authority.official_signing_key(official_id, PIN) as key:
        old_cert.public_key().verify(key.sign(DOCUMENT, ec.ECDSA(hashes.SHA256())), DOCUMENT,
                                     ec.ECDSA(hashes.SHA256()))

    done = requests.approve(authority, filed.id, actor=OPERATOR)
    old, new = authority.certificate(serial), authority.certificate(done.new_serial)
    assert old.revocation_reason == "affiliationChanged"
    assert new.organization == "Ủy ban nhân dân phường Sài Gòn"
    assert "T=Phó Chánh Văn phòng" in new.subject and "OU=" not in new.subject
    assert new.spki_sha256 != old.spki_sha256 and new.official_key_id == new_key
    keys = _keys(kyso_app, official_id)
    assert keys[new_key] == "active" and all(keys[k] == "retired" for k in before)
    with kyso_app.readers() as s:
        official = store.get_official(s, official_id)
        assert official.organization == "Ủy ban nhân dân phường Sài Gòn"
        assert official.unit is None and official.title == "Phó Chánh Văn phòng"
    new_cert = x509.load_der_x509_certificate(new.cert_der)
    assert spki_sha256(new_cert.public_key()) == new.spki_sha256  # type: ignore[arg-type]
    with authority.official_signing_key(official_id, PIN) as key:
        new_cert.public_key().verify(key.sign(DOCUMENT, ec.ECDSA(hashes.SHA256())), DOCUMENT,
                                     ec.ECDSA(hashes.SHA256()))


def test_reject_and_cancel_retire_the_pending_key(kyso_app, official_c, official_a):
    authority = kyso_app.authority
    official_id, serial = official_c
    active = _keys(kyso_app, official_id)
    filed = requests.file_renewal(authority, serial, actor="account:chau",
                                  official_id=official_id, key="new", pin=PIN)
    with pytest.raises(InvalidRequest):
        requests.reject(authority, filed.id, "   ", actor=OPERATOR)
    with pytest.raises(InvalidRequest):
        requests.reject(authority, filed.id, "x" * 501, actor=OPERATOR)
    rejected = requests.reject(authority, filed.id, "Thiếu văn bản đề nghị", actor=OPERATOR)
    assert rejected.status == "rejected" and rejected.reason == "Thiếu văn bản đề nghị"
    keys = _keys(kyso_app, official_id)
    assert {k: v for k, v in keys.items() if k not in active} == {
        k: "retired" for k in keys if k not in active}
    assert all(keys[k] == "active" for k in active)
    assert authority.certificate(serial).status == "valid"
    assert _audit(kyso_app, f"request:{filed.id}") == [("request.file", "success"),
                                                       ("request.reject", "success")]

    again = requests.file_renewal(authority, serial, actor="account:chau",
                                  official_id=official_id, key="new", pin=PIN)
    with pytest.raises(NotFound):  # another official cannot see or cancel it
        requests.cancel(authority, again.id, official_id=official_a[0], actor="account:an")
    with pytest.raises(NotFound):
        requests.get(authority, again.id, official_id=official_a[0])
    cancelled = requests.cancel(authority, again.id, official_id=official_id,
                                actor="account:chau")
    assert cancelled.status == "cancelled"
    assert list(_keys(kyso_app, official_id).values()).count("active") == 1
    assert ("request.cancel", "success") in _audit(kyso_app, f"request:{again.id}")
    with pytest.raises(RequestDecided):
        requests.cancel(authority, again.id, official_id=official_id, actor="account:chau")
    mine = requests.list_requests(authority, official_id=official_id)
    assert [r.id for r in mine] == [again.id, filed.id]


def test_refusals_change_nothing(kyso_app, official_c, official_a, counts):
    authority = kyso_app.authority
    official_id, serial = official_c
    before = counts()
    with pytest.raises(NotFound):  # someone else's certificate
        requests.file_renewal(authority, serial, actor="account:an",
                              official_id=official_a[0])
    with pytest.raises(NotFound):
        requests.file_renewal(authority, "abc123", actor=OPERATOR, filed_via="operator")
    with pytest.raises(InvalidRequest):
        requests.file_renewal(authority, "not-hex", actor=OPERATOR)
    with pytest.raises(InvalidRequest):  # nothing changes
        requests.file_change(authority, serial, {"name": "Phạm Minh Châu"}, actor="account:chau",
                             official_id=official_id)
    with pytest.raises(InvalidRequest):
        requests.file_change(authority, serial, {}, actor="account:chau",
                             official_id=official_id)
    with pytest.raises(InvalidRequest):
        requests.file_change(authority, serial, {"country": "US"}, actor="account:chau",
                             official_id=official_id)
    with pytest.raises(SubjectRejected):  # CN is at most 64 characters
        requests.file_change(authority, serial, {"name": "A" * 65}, actor="account:chau",
                             official_id=official_id)
    with pytest.raises(SubjectRejected):  # the name is required
        requests.file_change(authority, serial, {"name": ""}, actor="account:chau",
                             official_id=official_id)
    with pytest.raises(InvalidRequest):
        requests.file_change(authority, serial, {"email": "not an address"},
                             actor="account:chau", official_id=official_id)
    with pytest.raises(InvalidRequest):
        requests.file_change(authority, serial, {"title": "x" * 300}, actor="account:chau",
                             official_id=official_id)
    with pytest.raises(InvalidRequest):  # a new key needs the PIN
        requests.file_renewal(authority, serial, actor=OPERATOR, filed_via="operator",
                              key="new")
    with pytest.raises(InvalidRequest):
        requests.file_renewal(authority, serial, actor=OPERATOR, key="other")
    with pytest.raises(PinIncorrect):
        requests.file_renewal(authority, serial, actor="account:chau",
                              official_id=official_id, key="new", pin="999999999")
    with pytest.raises(NotFound):
        requests.approve(authority, 10**9, actor=OPERATOR)
    assert counts() == before
    assert requests.list_requests(authority, official_id=official_id, statuses=["pending"]) \
        == []
    assert ("request.file", "refused") in _audit(kyso_app, f"cert:{serial}")


def test_expired_certificate_is_refused(kyso_app, official_c, monkeypatch):
    authority = kyso_app.authority
    official_id, serial = official_c
    later = authority.clock() + timedelta(days=800)
    monkeypatch.setattr(authority, "clock", lambda: later)
    with pytest.raises(StateConflict, match="expired"):
        requests.file_renewal(authority, serial, actor="account:chau", official_id=official_id)


def test_approval_checks_everything_before_issuing(kyso_app, official_c):
    authority = kyso_app.authority
    official_id, serial = official_c
    filed = requests.file_change(authority, serial, {"title": "Trưởng phòng"},
                                 actor="account:chau", official_id=official_id)
    # The stored content went bad (a profile changed, a hand edit): refused before issuing.
    bad = dict(filed.content, name="B" * 80)
    with kyso_app.sessions.begin() as s:
        s.execute(update(OfficialRequestRecord).where(OfficialRequestRecord.id == filed.id)
                  .values(content=json.dumps(bad)))
    issued_before = _cert_count(kyso_app)
    with pytest.raises(SubjectRejected):
        requests.approve(authority, filed.id, actor=OPERATOR)
    assert _cert_count(kyso_app) == issued_before
    assert requests.get(authority, filed.id).status == "pending"
    assert authority.certificate(serial).status == "valid"
    assert ("request.approve", "failure") in _audit(kyso_app, f"request:{filed.id}")
    # The certificate revoked meanwhile: refused, nothing issued, the request stays pending.
    with kyso_app.sessions.begin() as s:
        s.execute(update(OfficialRequestRecord).where(OfficialRequestRecord.id == filed.id)
                  .values(content=json.dumps(filed.content)))
    authority.revoke(serial, "keyCompromise")
    with pytest.raises(StateConflict):
        requests.approve(authority, filed.id, actor=OPERATOR)
    assert _cert_count(kyso_app) == issued_before
    rejected = requests.reject(authority, filed.id, "Chứng thư đã bị thu hồi", actor=OPERATOR)
    assert rejected.status == "rejected"


def test_reissue_is_a_library_call(kyso_app):
    authority = kyso_app.authority
    official_id, serial = _add(authority, "Võ Thị Dung")
    plan = authority.prepare_reissue(serial, {"locality": "Thành phố Thủ Đức"})
    assert plan.same_organization and plan.revocation_reason is x509.ReasonFlags.superseded
    issued = authority.reissue(serial, {"organization": "Sở Nội vụ"})
    rec = authority.certificate(issued.serial)
    assert rec.organization == "Sở Nội vụ" and rec.official_id == official_id
    assert authority.certificate(serial).status == "valid"  # revoking is the caller's call


# -- notifications: the official is mailed about the decision (ca.lifecycle, the outbox) ----

def _mails(kyso_app, ref: str):  # type: ignore[no-untyped-def]
    from ca import outbox

    with kyso_app.readers() as s:
        return outbox.list_messages(s, ref=ref)


def _email(kyso_app, official_id: int) -> str:  # type: ignore[no-untyped-def]
    with kyso_app.readers() as s:
        return store.get_official(s, official_id).email


def test_approval_queues_the_new_certificate_mail_once(kyso_app):
    from ca import lifecycle

    authority = kyso_app.authority
    official_id, serial = _add(authority, "Đặng Thị Thư")
    filed = requests.file_renewal(authority, serial, actor="account:thu",
                                  official_id=official_id)
    assert _mails(kyso_app, f"request:{filed.id}") == []  # filing mails nobody
    done = requests.approve(authority, filed.id, actor=OPERATOR)
    [mail] = _mails(kyso_app, f"request:{filed.id}")
    assert mail.recipient == _email(kyso_app, official_id)
    assert mail.kind == lifecycle.REISSUE_KIND and mail.status == "queued"
    assert mail.subject == "Chứng thư số mới đã được cấp cho ông/bà"
    assert mail.dedupe_key == f"reissued:{done.new_serial}"
    assert "Kính gửi Đặng Thị Thư" in mail.body
    assert done.new_serial in mail.body and serial in mail.body
    assert f"Gia hạn theo yêu cầu số {filed.id}" in mail.body and "superseded" in mail.body
    assert "/portal" in mail.body
    with kyso_app.readers() as s:  # audited in the approval's transaction
        queued = s.scalars(select(AuditEventRecord).where(
            AuditEventRecord.action == "mail.queue",
            AuditEventRecord.object == f"mail:{mail.id}")).all()
    assert len(queued) == 1
    # The same notice again (a retried batch, a second caller): not queued twice.
    rec = authority.certificate(done.new_serial)
    with kyso_app.sessions.begin() as s:
        again = lifecycle.notify_reissued(
            s, to=mail.recipient, official_name="Đặng Thị Thư", new_serial=done.new_serial,
            not_after=rec.not_after, subject_dn=rec.subject, ref=f"request:{filed.id}")
    assert again is None
    assert len(_mails(kyso_app, f"request:{filed.id}")) == 1


def test_change_of_organization_mails_the_new_address(kyso_app):
    authority = kyso_app.authority
    official_id, serial = _add(authority, "Hồ Văn Khải")
    filed = requests.file_change(
        authority, serial, {"organization": "Sở Tư pháp", "email": "khai.ho@stp.gov.vn"},
        actor=OPERATOR, filed_via="operator")
    requests.approve(authority, filed.id, actor=OPERATOR)
    [mail] = _mails(kyso_app, f"request:{filed.id}")
    assert mail.recipient == "khai.ho@stp.gov.vn" == _email(kyso_app, official_id)
    assert "Thay đổi nội dung" in mail.body and "affiliationChanged" in mail.body
    assert authority.certificate(serial).revocation_reason == "affiliationChanged"


def test_rejection_mails_the_reason_cancellation_mails_nobody(kyso_app):
    from ca import lifecycle

    authority = kyso_app.authority
    official_id, serial = _add(authority, "Trịnh Thị Lan")
    filed = requests.file_renewal(authority, serial, actor="account:lan",
                                  official_id=official_id)
    requests.reject(authority, filed.id, "Chưa có văn bản đề nghị của thủ trưởng đơn vị",
                    actor=OPERATOR)
    [mail] = _mails(kyso_app, f"request:{filed.id}")
    assert mail.recipient == _email(kyso_app, official_id)
    assert mail.kind == lifecycle.REJECTED_KIND
    assert mail.subject == f"Yêu cầu gia hạn chứng thư số số {filed.id} đã bị từ chối"
    assert mail.dedupe_key == f"rejected:request:{filed.id}"
    assert "Kính gửi Trịnh Thị Lan" in mail.body
    assert "Lý do từ chối: Chưa có văn bản đề nghị của thủ trưởng đơn vị" in mail.body
    assert serial in mail.body
    with kyso_app.sessions.begin() as s:
        assert lifecycle.notify_rejected(
            s, to=mail.recipient, official_name=None, request_id=filed.id, kind="renewal",
            serial=serial, reason="lần nữa") is None
    assert len(_mails(kyso_app, f"request:{filed.id}")) == 1

    withdrawn = requests.file_renewal(authority, serial, actor="account:lan",
                                      official_id=official_id)
    requests.cancel(authority, withdrawn.id, official_id=official_id, actor="account:lan")
    assert _mails(kyso_app, f"request:{withdrawn.id}") == []


def test_an_unusable_address_never_undoes_the_decision(kyso_app):
    from ca.models import OfficialRecord

    authority = kyso_app.authority
    official_id, serial = _add(authority, "Mai Văn Lộc")
    with kyso_app.sessions.begin() as s:  # a bad address from an old import
        s.execute(update(OfficialRecord).where(OfficialRecord.id == official_id)
                  .values(email="loc mai <at> benthanh"))
    filed = requests.file_renewal(authority, serial, actor=OPERATOR, filed_via="operator")
    done = requests.approve(authority, filed.id, actor=OPERATOR)
    assert done.status == "approved" and authority.certificate(serial).status == "revoked"
    assert _mails(kyso_app, f"request:{filed.id}") == []


class Killed(BaseException):
    """The approving process dies here (not an Exception: nothing on the way out catches it)."""


def _die(*args: object, **kwargs: object) -> None:
    raise Killed


@pytest.mark.parametrize("dies", ["before issuing", "after reserving", "after issuing",
                                  "after issuing, that one revoked since", "before revoking"])
def test_an_interrupted_approval_is_resumed_by_approving_again(kyso_app, monkeypatch, dies):
    authority = kyso_app.authority
    official_id, serial = _add(authority, f"Trương Thị Thu ({dies})")
    moves = dies == "before revoking"  # a change of organization: affiliationChanged
    filed = (requests.file_change(authority, serial, {"organization": "Sở Tư pháp",
                                                      "email": "thu.truong@stp.gov.vn"},
                                  actor="account:thu", official_id=official_id) if moves
             else requests.file_renewal(authority, serial, actor="account:thu",
                                        official_id=official_id))
    real_issue = authority.issue

    def issue_then_die(*args, **kwargs):  # type: ignore[no-untyped-def]
        real_issue(*args, **kwargs)
        raise Killed

    target, replacement = {"before issuing": ("issue", _die),
                           "after reserving": ("_sign", _die),  # HSM never signed
                           "after issuing": ("issue", issue_then_die),
                           "after issuing, that one revoked since": ("issue", issue_then_die),
                           "before revoking": ("revoke", _die)}[dies]
    monkeypatch.setattr(authority, target, replacement)
    with pytest.raises(Killed):
        requests.approve(authority, filed.id, actor=OPERATOR)
    monkeypatch.undo()

    left = requests.get(authority, filed.id)
    if dies == "before revoking":
        assert left.status == "approved" and authority.certificate(serial).status == "valid"
    else:
        # Still claimed: a second operator is told it is under way, until it is clearly dead.
        assert left.status == "issuing" and not left.interrupted(authority.clock())
        with pytest.raises(RequestDecided, match="being approved"):
            requests.approve(authority, filed.id, actor=OPERATOR)
        with kyso_app.sessions.begin() as s:
            rec = store.get_official_request(s, filed.id, for_update=True)
            rec.decided_at -= requests.STALE_CLAIM + timedelta(seconds=1)
        assert requests.get(authority, filed.id).interrupted(authority.clock())
    if dies == "after issuing, that one revoked since":  # not adopted: a new one is issued
        with kyso_app.readers() as s:
            [orphan] = store.certificate_successors(s, authority.certificate(serial).id)
        authority.revoke(orphan.serial, x509.ReasonFlags.cessation_of_operation,
                         actor=OPERATOR)

    done = requests.approve(authority, filed.id, actor=OPERATOR)
    assert done.status == "approved" and done.new_serial
    old = authority.certificate(serial)
    assert old.status == "revoked"
    assert old.revocation_reason == ("affiliationChanged" if moves else "superseded")
    with kyso_app.readers() as s:
        after = store.certificate_successors(s, old.id)
    # Exactly one new certificate, whatever the interruption left.
    assert [c.serial for c in after if c.status == "valid"] == [done.new_serial]
    assert [c.status for c in after] == {"after reserving": ["failed", "valid"],
                                         "after issuing, that one revoked since":
                                             ["revoked", "valid"]}.get(dies, ["valid"])
    assert len(_mails(kyso_app, f"request:{filed.id}")) == 1
    with pytest.raises(RequestDecided):
        requests.approve(authority, filed.id, actor=OPERATOR)
