"""OCSP responder (RFC 6960 / RFC 5019); see issue 4."""
