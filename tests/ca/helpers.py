"""Small builders shared by the CA tests."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

OFFICIAL_SUBJECT = ("CN=Nguyễn Thị Hồng Nhung,T=Chánh Văn phòng,"
                    "O=Ủy ban nhân dân phường Bến Thành,OU=Văn phòng,"
                    "L=Thành phố Hồ Chí Minh,C=VN")


def make_csr(key: object | None = None, cn: str = "ignored") -> bytes:
    key = key or ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
        .public_bytes(serialization.Encoding.PEM)
    )


def issue_official_csr(authority, ca_name: str = "issuing"):  # type: ignore[no-untyped-def]
    request = authority.request_from_csr("official-signing", make_csr(), OFFICIAL_SUBJECT,
                                         emails=("nhung@benthanh.hochiminhcity.gov.vn",))
    return authority.issue(ca_name, request)
