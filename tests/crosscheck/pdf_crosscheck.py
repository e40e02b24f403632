"""Independent cross-checks of signed PDFs: Poppler's pdfsig (NSS) and endesive."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

__all__ = [
    "PdfsigError",
    "PdfsigSignature",
    "endesive_verify",
    "nss_db",
    "pdfsig",
]

_TIMEOUT = 60

# ---------------------------------------------------------------------------------------------
# NSS database
# ---------------------------------------------------------------------------------------------


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed (Debian package {package}); scripts/test installs it")
    return path


def _run(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(args), capture_output=True, text=True, errors="replace", timeout=_TIMEOUT, check=False
    )
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}\n"
                           f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def _nss_spec(directory: Path) -> str:
    return f"sql:{directory}"


def _split_pem(blob: bytes) -> list[x509.Certificate]:
    certs = x509.load_pem_x509_certificates(blob)
    if not certs:
        raise ValueError("no PEM certificate found")
    return certs


def nss_db(directory: Path, trusted_roots_pem: Sequence[bytes]) -> Path:
    """A new NSS database (certutil -N --empty-password) trusting the given roots as CAs
    (certutil -A -t 'CT,C,C'); returns the dir for pdfsig -nssdir.

    Each item of ``trusted_roots_pem`` may hold one or more PEM certificates. An empty
    sequence gives a database that trusts nothing (for negative checks)."""
    certutil = _tool("certutil", "libnss3-tools")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if (directory / "cert9.db").exists():
        raise FileExistsError(f"{directory} already holds an NSS database")
    _run([certutil, "-N", "-d", _nss_spec(directory), "--empty-password"])
    seen: set[bytes] = set()
    for blob in trusted_roots_pem:
        for cert in _split_pem(blob):
            der = cert.public_bytes(serialization.Encoding.DER)
            if der in seen:
                continue
            seen.add(der)
            cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
            label = str(cns[0].value) if cns else "root"
            nickname = f"{label} {hashlib.sha256(der).hexdigest()[:12]}"
            pem_file = directory / f"trusted-{len(seen)}.pem"
            pem_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            _run([certutil, "-A", "-d", _nss_spec(directory), "-n", nickname, "-t", "CT,C,C",
                  "-a", "-i", str(pem_file)])
    return directory


# ---------------------------------------------------------------------------------------------
# pdfsig
# ---------------------------------------------------------------------------------------------

SIGNATURE_VALID = "Signature is Valid."
CERTIFICATE_TRUSTED = "Certificate is Trusted."
# CERTIFICATE_GENERIC_ERROR: what Poppler prints for any NSS error it does not map.
CERTIFICATE_GENERIC = "Unknown issue with Certificate or corrupted data."


class PdfsigError(AssertionError):
    """pdfsig failed or printed something this parser does not understand."""


@dataclass(frozen=True)
class PdfsigSignature:
    """One ``Signature #N:`` block of pdfsig's report."""

    index: int  # 1-based, as pdfsig numbers them
    signer: str  # "Signer Certificate Common Name"
    signing_time: str  # as printed, e.g. "Nov 26 2026 04:08:42"
    signature_valid: bool  # "Signature Validation: Signature is Valid."
    certificate_trusted: bool  # the NSS chain check passed (see certificate_trust_source)
    total_document_signed: bool | None  # None if pdfsig printed neither line
    raw: str  # this signature's block, verbatim (+ vfychain's verdict when it was asked)
    field_name: str | None  # "Signature Field Name"
    signer_dn: str | None  # "Signer full Distinguished Name"
    hash_algorithm: str | None  # "Signing Hash Algorithm", e.g. "SHA-256"
    signature_type: str | None  # e.g. "ETSI.CAdES.detached", "adbe.pkcs7.detached"
    signed_ranges: tuple[tuple[int, int], ...]  # "Signed Ranges: [0 - 1080], [7216 - 7794]"
    signature_status: str  # the "Signature Validation" text, e.g. "Digest Mismatch."
    # The "Certificate Validation" text; None when pdfsig did not check the certificate
    # (it skips that check when the signature itself is not valid).
    certificate_status: str | None
    # "pdfsig" when pdfsig itself printed "Certificate is Trusted."; "vfychain" when pdfsig
    # printed the generic error and NSS's vfychain confirmed the chain (see _confirm_with_vfychain).
    certificate_trust_source: str | None
    fields: dict[str, str]  # every "  - Key: Value" line of the block


_HEADER = re.compile(r"^Digital Signature Info of: ")
_SIG_START = re.compile(r"^Signature #(\d+):$")
_ITEM = re.compile(r"^  - (.*)$")
_RANGE = re.compile(r"\[(\d+) - (\d+)\]")


@functools.cache
def _pdfsig_version(binary: str) -> str:
    proc = _run([binary, "-v"], check=False)
    match = re.search(r"pdfsig version (\S+)", proc.stdout + proc.stderr)
    return match.group(1) if match else "unknown"


def _parse(output: str, context: str) -> list[tuple[int, list[str]]]:
    lines = output.splitlines()
    if not lines or not _HEADER.match(lines[0]):
        raise PdfsigError(f"{context}: unexpected first line\n{output}")
    blocks: list[tuple[int, list[str]]] = []
    for line in lines[1:]:
        start = _SIG_START.match(line)
        if start:
            blocks.append((int(start.group(1)), [line]))
        elif blocks and _ITEM.match(line):
            blocks[-1][1].append(line)
        elif line.strip():
            raise PdfsigError(f"{context}: cannot parse line {line!r}\n{output}")
    if not blocks:
        raise PdfsigError(f"{context}: no 'Signature #N:' block\n{output}")
    return blocks


def _signature(index: int, block: list[str], context: str, output: str) -> PdfsigSignature:
    fields: dict[str, str] = {}
    total: bool | None = None
    for line in block[1:]:
        item = _ITEM.match(line)
        assert item is not None
        text = item.group(1)
        if text == "Total document signed":
            total = True
        elif text == "Not total document signed":
            total = False
        elif ": " in text:
            key, value = text.split(": ", 1)
            fields[key] = value
        elif text.endswith(":"):
            fields[text[:-1]] = ""
        else:
            fields[text] = ""
    try:
        signature_status = fields["Signature Validation"]
    except KeyError:
        raise PdfsigError(
            f"{context}: signature #{index} has no 'Signature Validation'\n{output}") from None
    certificate_status = fields.get("Certificate Validation")
    ranges = tuple((int(a), int(b)) for a, b in _RANGE.findall(fields.get("Signed Ranges", "")))
    trusted = certificate_status == CERTIFICATE_TRUSTED
    return PdfsigSignature(
        index=index,
        signer=fields.get("Signer Certificate Common Name", ""),
        signing_time=fields.get("Signing Time", ""),
        signature_valid=signature_status == SIGNATURE_VALID,
        certificate_trusted=trusted,
        total_document_signed=total,
        raw="\n".join(block),
        field_name=fields.get("Signature Field Name"),
        signer_dn=fields.get("Signer full Distinguished Name"),
        hash_algorithm=fields.get("Signing Hash Algorithm"),
        signature_type=fields.get("Signature Type"),
        signed_ranges=ranges,
        signature_status=signature_status,
        certificate_status=certificate_status,
        certificate_trust_source="pdfsig" if trusted else None,
        fields=fields,
    )


def pdfsig(pdf: Path, nssdir: Path, *, revocation: bool = False,
           confirm_generic_error: bool = True) -> list[PdfsigSignature]:
    """Run Poppler's pdfsig on ``pdf`` with the NSS database ``nssdir`` (certificates are
    verified; ``-no-ocsp`` unless ``revocation``) and parse its report, one entry per signature.

    A PDF without signatures gives []. Raises PdfsigError (an AssertionError) with pdfsig's
    whole output when pdfsig fails or prints something unexpected.

    Poppler up to at least 22.12 (Debian 12) reads NSS's error code after CERT_PKIXVerifyCert
    without looking at its result, so a chain that NSS accepted can be reported as
    "Unknown issue with Certificate or corrupted data." when an earlier, harmless lookup left
    an error behind (always so with -no-ocsp: SEC_ERROR_EXTENSION_NOT_FOUND from the CRL
    lookup; also when an OCSP responder is unreachable under the soft-fail policy). Newer
    Poppler only reads the error when the call failed. With ``confirm_generic_error`` such a
    signature is re-checked by NSS's vfychain (CERT_PKIXVerifyCert, certificateUsageEmailSigner,
    the same database, the same revocation policy as pdfsig's) on the certificates embedded in
    the signature; certificate_trust_source says which tool's verdict stands. A real failure
    (untrusted issuer, expired, revoked) has its own message and is never re-checked, and a
    generic error that NSS really returns fails under vfychain as well."""
    binary = _tool("pdfsig", "poppler-utils")
    pdf = Path(pdf)
    args = [binary, "-nssdir", _nss_spec(Path(nssdir))]
    if not revocation:
        args.append("-no-ocsp")
    args.append(str(pdf))
    proc = _run(args, check=False)
    output = proc.stdout
    context = f"{' '.join(args)} (exit {proc.returncode}, pdfsig {_pdfsig_version(binary)})"
    if proc.returncode == 2 and "does not contain any signatures" in (output + proc.stderr):
        return []
    if proc.returncode != 0:
        raise PdfsigError(f"{context} failed\nstdout:\n{output}\nstderr:\n{proc.stderr}")
    signatures = [_signature(i, block, context, output) for i, block in _parse(output, context)]
    if confirm_generic_error and any(_generic(s) for s in signatures):
        data = pdf.read_bytes()
        signatures = [
            _confirm_with_vfychain(s, data, Path(nssdir), revocation=revocation)
            if _generic(s) else s
            for s in signatures
        ]
    return signatures


def _generic(sig: PdfsigSignature) -> bool:
    return sig.signature_valid and sig.certificate_status == CERTIFICATE_GENERIC


def _signature_certificates(data: bytes, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
    """The DER certificates of the CMS signature between the two signed ranges: signer first."""
    if len(ranges) != 2:
        raise PdfsigError(f"expected two signed ranges, got {ranges}")
    (_, first_end), (second_start, _) = ranges
    contents = data[first_end:second_start].strip()
    if not (contents.startswith(b"<") and contents.endswith(b">")):
        raise PdfsigError(f"no hex string between the signed ranges {ranges}")
    blob = bytes.fromhex(contents[1:-1].decode("ascii"))
    signed_data = cms.ContentInfo.load(blob, strict=False)["content"]
    sid = signed_data["signer_infos"][0]["sid"]
    signer: bytes | None = None
    others: list[bytes] = []
    for choice in signed_data["certificates"]:
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            mine = (cert.issuer == sid.chosen["issuer"]
                    and cert.serial_number == sid.chosen["serial_number"].native)
        else:
            mine = cert.key_identifier == sid.chosen.native
        if mine and signer is None:
            signer = cert.dump()
        else:
            others.append(cert.dump())
    if signer is None:
        raise PdfsigError("the signer's certificate is not embedded in the signature")
    return [signer, *others]


def _confirm_with_vfychain(sig: PdfsigSignature, data: bytes, nssdir: Path, *,
                           revocation: bool) -> PdfsigSignature:
    vfychain = _tool("vfychain", "libnss3-tools")
    certs = _signature_certificates(data, sig.signed_ranges)
    # pdfsig's policies: CERT_GetClassicOCSPDisabledPolicy (CRLs from the database only) and,
    # with OCSP, CERT_GetClassicOCSPEnabledSoftFailurePolicy (also OCSP for the leaf, soft-fail).
    policy = ["-g", "leaf", "-m", "crl", "-s", "forbidFetching"]
    if revocation:
        policy += ["-m", "ocsp"]
    policy += ["-g", "chain", "-m", "crl", "-s", "forbidFetching"]
    with tempfile.TemporaryDirectory(prefix="vfychain-") as tmp:
        files = []
        for n, der in enumerate(certs):
            path = Path(tmp) / f"cert{n}.der"
            path.write_bytes(der)
            files.append(str(path))
        # -pp: CERT_PKIXVerifyCert; -u 4: certUsageEmailSigner; the first file is the signer's.
        proc = _run([vfychain, "-d", _nss_spec(nssdir), "-pp", "-u", "4", *policy, *files],
                    check=False)
    verdict = (proc.stdout + proc.stderr).strip()
    if proc.returncode == 0 and "Chain is good!" in verdict:
        return _replace(sig, certificate_trusted=True, certificate_trust_source="vfychain",
                        raw=f"{sig.raw}\n  [vfychain: {verdict}]")
    return _replace(sig, raw=f"{sig.raw}\n  [vfychain: {verdict}]")


def _replace(sig: PdfsigSignature, **changes: object) -> PdfsigSignature:
    return dataclasses.replace(sig, **changes)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# endesive
# ---------------------------------------------------------------------------------------------

# oscrypto 1.3.0 (the last release; endesive -> certvalidator -> oscrypto) finds the OpenSSL
# version with '\b(\d\.\d\.\d[a-z]*)\b', which cannot match "OpenSSL 3.0.10" and later, so
# importing it raises "Error detecting the version of libcrypto":
# https://github.com/wbond/oscrypto/issues/75 (fixed on master by #76, never released).
_OSCRYPTO_ISSUE = "https://github.com/wbond/oscrypto/issues/75"
_OSCRYPTO_BUGGY = r"re.search('\\b(\\d\\.\\d\\.\\d[a-z]*)\\b', version_string)"
_OSCRYPTO_FIXED = r"re.search('\\b(\\d\\.\\d\\.\\d+[a-z]*)\\b', version_string)"


def _oscrypto_workaround() -> None:
    """Make oscrypto importable despite wbond/oscrypto#75.

    Guarded: it does nothing unless importing oscrypto's OpenSSL backend really fails with that
    bug's error, and the module that failed still holds the faulty expression; then it loads that
    one module from its own source with the expression fixed (as upstream did) and imports again.
    A fixed oscrypto imports at the first try, so this is then a no-op."""
    from oscrypto.errors import LibraryNotFoundError

    try:
        importlib.import_module("oscrypto.asymmetric")
        return
    except LibraryNotFoundError as exc:
        if "Error detecting the version of libcrypto" not in str(exc):
            raise
        original = exc
    import oscrypto

    name = "oscrypto._openssl._libcrypto_" + ("cffi" if oscrypto.ffi() == "cffi" else "ctypes")
    spec = importlib.util.find_spec(name)
    loader = spec.loader if spec is not None else None
    get_source = getattr(loader, "get_source", None)
    source = get_source(name) if get_source is not None else None
    if spec is None or source is None or _OSCRYPTO_BUGGY not in source:
        raise RuntimeError(f"oscrypto cannot detect the OpenSSL version and the known fault "
                           f"({_OSCRYPTO_ISSUE}) is not where expected in {name}") from original
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        patched = source.replace(_OSCRYPTO_BUGGY, _OSCRYPTO_FIXED)
        code = compile(patched, spec.origin or name, "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 - oscrypto's own source, one expression fixed
    except BaseException:
        sys.modules.pop(name, None)
        raise
    importlib.import_module("oscrypto.asymmetric")


_CERTVALIDATOR_BUGGY = "        sources.extend(cert.delta_crl_distribution_points)\n"
_CERTVALIDATOR_FIXED = "        sources.append(cert.delta_crl_distribution_points)\n"


def _certvalidator_workaround() -> None:
    """Make certvalidator 0.11.1 (endesive's path validator) accept certificates that name a
    delta CRL (Freshest CRL extension, as ours do).

    Its verify_crl() `extend`s the list of distribution-point lists with the delta points
    themselves, then iterates each DistributionPoint as if it were a list and crashes
    ("string indices must be integers"). Guarded: only when that exact line is in the installed
    verify_crl; the function is recompiled from its own source with `append` and put back in
    its module (its callers look it up there at call time). A fixed release is left alone."""
    import inspect

    from certvalidator import validate

    if getattr(validate.verify_crl, "_kyso_fixed", False):
        return
    source = inspect.getsource(validate.verify_crl)
    if _CERTVALIDATOR_BUGGY not in source:
        return
    namespace: dict[str, object] = {}
    code = compile(source.replace(_CERTVALIDATOR_BUGGY, _CERTVALIDATOR_FIXED),
                   inspect.getsourcefile(validate.verify_crl) or "validate.py", "exec",
                   dont_inherit=True)
    exec(code, validate.__dict__, namespace)  # noqa: S102 - its own source, one line fixed
    fixed = namespace["verify_crl"]
    fixed._kyso_fixed = True  # type: ignore[attr-defined]
    validate.verify_crl = fixed  # type: ignore[assignment]


def endesive_verify(pdf_bytes: bytes,
                    trusted_roots_pem: Sequence[bytes]) -> list[tuple[bool, bool, bool]]:
    """endesive.pdf.verify -> per signature (hashok, signatureok, certok).

    Every /ByteRange in file order (endesive.pdf.verify itself checks only the last one).
    hashok: the message digest over the byte ranges; signatureok: the signature over the signed
    attributes; certok: certvalidator built and validated a path, at the current time and with no
    revocation check, from the signer's certificate through the certificates embedded in the
    signature to one of ``trusted_roots_pem`` - or to one of certifi's public roots, which
    endesive always adds. A signature timestamp's TSA must chain to those roots too, or endesive
    raises TSPVerificationError.

    RFC 3161 document timestamps are left out of the list: endesive does not compare their
    message imprint with the document, so it has no verdict on them (pdfsig lists them)."""
    _oscrypto_workaround()
    _certvalidator_workaround()
    from endesive.pdf.verify import PDFVerifier

    roots: list[bytes] = []
    for blob in trusted_roots_pem:
        roots.extend(c.public_bytes(serialization.Encoding.DER) for c in _split_pem(blob))
    verifier = PDFVerifier(pdf_bytes, list(roots))
    return [
        (bool(result.hashok), bool(result.signatureok), bool(result.certok))
        for result in verifier.verify_all_signatures()
        if result.signed_data is not None  # None: a document timestamp
    ]
