"""A reorganization applied with --rekey waits for each official: the portal shows what is
waiting and the official alone completes it with their signing PIN (new HSM key, new
certificate for it, the old one revoked)."""

from __future__ import annotations

import secrets
from typing import Any

from cryptography import x509
from flask.testing import FlaskClient
from web_support import csrf, login, new_account, new_official

from ca import reorg

PIN = "579135791"
HEADER = ("old_organization,old_unit,old_locality,new_organization,new_unit,new_locality,"
          "effective_date")


def test_the_official_completes_a_rekey_with_their_pin(kyso_app: Any,
                                                       client: FlaskClient) -> None:
    old_org = f"Ủy ban nhân dân xã Bình Chánh {secrets.token_hex(3)}"
    new_org = f"Ủy ban nhân dân xã Tân Nhựt {secrets.token_hex(3)}"
    official_id, old_serial = new_official(kyso_app, "Phạm Thị Thu Trang", PIN,
                                           organization=old_org)
    authority = kyso_app.authority
    batch_id = reorg.start(authority, f"{HEADER}\n{old_org},,,{new_org},,,2025-07-01\n",
                           rekey=True, actor="test")
    login(client, new_account(kyso_app, "official", official=official_id))

    page = client.get("/portal/").get_data(as_text=True)
    assert 'id="rekey"' in page and old_serial in page and new_org in page
    action = f"/portal/rekey/{batch_id}"

    wrong = client.post(action, data={"csrf_token": csrf(client, "/portal/"), "pin": "111222333"})
    assert wrong.status_code == 403
    assert 'role="alert"' in wrong.get_data(as_text=True)
    assert authority.certificate(old_serial).status == "valid"  # nothing happened
    assert client.post(action, data={"csrf_token": csrf(client, "/portal/"),
                                     "pin": ""}).status_code == 400

    done = client.post(action, data={"csrf_token": csrf(client, "/portal/"), "pin": PIN})
    assert done.status_code == 200, done.get_data(as_text=True)[:800]
    text = done.get_data(as_text=True)
    assert 'id="rekey-done"' in text and 'id="rekey"' not in text  # nothing left waiting
    old = authority.certificate(old_serial)
    assert (old.status, old.revocation_reason) == ("revoked", "affiliationChanged")
    [new] = [i for i in reorg.show(authority, batch_id).items if i.old_serial == old_serial]
    assert new.status == "done" and new.new_serial and new.new_serial in text
    new_cert = x509.load_der_x509_certificate(authority.certificate(new.new_serial).cert_der)
    old_cert = x509.load_der_x509_certificate(old.cert_der)
    assert new_cert.public_key() != old_cert.public_key()  # a new key, not the old one
    assert new_org in new_cert.subject.rfc4514_string()

    # Nothing waits any more: a second try is a clear refusal, not a second key.
    again = client.post(action, data={"csrf_token": csrf(client, "/portal/"), "pin": PIN})
    assert again.status_code == 404


def test_someone_elses_batch_item_is_not_completed(kyso_app: Any, client: FlaskClient) -> None:
    org = f"Ủy ban nhân dân xã Hưng Long {secrets.token_hex(3)}"
    other_id, other_serial = new_official(kyso_app, "Đỗ Văn Lợi", PIN, organization=org)
    batch_id = reorg.start(kyso_app.authority,
                           f"{HEADER}\n{org},,,{org} mới,,,2025-07-01\n", rekey=True,
                           actor="test")
    mine, _ = new_official(kyso_app, "Hồ Thị Mai", PIN)
    login(client, new_account(kyso_app, "official", official=mine))
    refused = client.post(f"/portal/rekey/{batch_id}",
                          data={"csrf_token": csrf(client, "/portal/"), "pin": PIN})
    assert refused.status_code == 404
    assert kyso_app.authority.certificate(other_serial).status == "valid"
    assert other_id != mine
