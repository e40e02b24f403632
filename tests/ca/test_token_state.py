"""pkcs11-tool's independent view of the CA token: every CA key sensitive, never extractable,
and no official's key stored in it."""

from __future__ import annotations

from ca_test_constants import USER_PIN
from pkcs11_tool import list_objects, parse_objects

from ca import store


def _objects(softhsm) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    return parse_objects(list_objects(softhsm.module, softhsm.label, USER_PIN, softhsm.env()))


def test_ca_keys_are_sensitive_and_never_extractable(kyso_app, ca_softhsm):
    authority = kyso_app.authority
    authority.add_official(name="Phạm Văn Đức", organization="Sở Tư pháp", email="duc@stp.vn",
                           pin="135792468", ca_name="issuing")
    objects = _objects(ca_softhsm)
    private = [o for o in objects if o["kind"].startswith("Private Key Object")]
    with kyso_app.sessions() as s:
        ca_labels = {c.key_label for c in store.list_cas(s)}
    # Exactly the CA keys and the service keys (audit seals, OCSP responders): officials'
    # keys exist only wrapped, never as token objects.
    labels = {o["label"] for o in private}
    services = {x for x in labels if x == kyso_app.settings.audit.key_label
                or x.startswith("ocsp-")}
    assert labels - services == ca_labels
    for obj in private:
        access = [a.strip() for a in obj["Access"].split(",")]
        assert "sensitive" in access and "always sensitive" in access, obj
        assert "never extractable" in access and "extractable" not in access, obj
    secret = [o for o in objects if o["kind"].startswith("Secret Key Object")]
    assert [o["label"] for o in secret] == [authority.wrapping_key_label]
    access = [a.strip() for a in secret[0]["Access"].split(",")]
    assert "sensitive" in access and "never extractable" in access
    assert set(secret[0]["Usage"].replace(" ", "").split(",")) == {"wrap", "unwrap"}
