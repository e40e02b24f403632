"""Every token private key is sensitive and never extractable, by our API and by pkcs11-tool."""

from hsm import KeySpec


def test_key_attributes(token, keys):
    for name in KeySpec.NAMES:
        attrs = token.key_attributes(f"key-{name}")
        assert attrs["sensitive"] and attrs["always_sensitive"] and attrs["never_extractable"]
        assert not attrs["extractable"]
        assert attrs["token"] and attrs["private"] and attrs["sign"]
        assert not attrs["decrypt"] and not attrs["unwrap"] and not attrs["derive"]


def test_pkcs11_tool_agrees(token_objects, keys):
    objects = token_objects()
    private = [o for o in objects if o["kind"].startswith("Private Key Object")]
    assert {f"key-{n}" for n in KeySpec.NAMES} <= {o["label"] for o in private}
    for obj in private:
        access = [a.strip() for a in obj["Access"].split(",")]
        assert "sensitive" in access and "always sensitive" in access, obj
        assert "never extractable" in access and "extractable" not in access, obj
        assert obj["Usage"] == "sign", obj
