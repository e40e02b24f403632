"""OCSP responder (RFC 6960 with the RFC 5019 profile, nonces per RFC 8954): parse, look up
through ca's store, pre-sign, cache, serve (ocsp.wsgi). Responses are signed by a delegated
responder per CA whose key `ocsp-<CA>` lives in the HSM."""
