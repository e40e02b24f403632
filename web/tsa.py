"""The RFC 3161 timestamp authority over HTTP (RFC 3161 3.4): POST /tsa.

A TimeStampReq in, a TimeStampResp out, HTTP 200 for grants and rejections alike (a
malformed, empty or refused request is a `rejection` with its failure info). Only what is not
a timestamp query at all gets an HTTP error: another content type 415, a body above
[tsa] max_request_bytes 413 (checked before it is read), other methods 405.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from hsm import HsmError
from signer.errors import SignerError
from signer.tsa import SYSTEM_FAILURE, rejection
from web import get_kyso
from web.errors import error_response

bp = Blueprint("tsa", __name__)
log = logging.getLogger("kyso.web.tsa")
QUERY_TYPE = "application/timestamp-query"
REPLY_TYPE = "application/timestamp-reply"


def _reply(der: bytes) -> Response:
    return Response(der, mimetype=REPLY_TYPE, headers={"Cache-Control": "no-store"})


@bp.post("/tsa")
def timestamp() -> Response:
    kyso = get_kyso()
    limit = kyso.settings.tsa.max_request_bytes
    if request.mimetype != QUERY_TYPE:
        return error_response(415, "unsupported_media_type",
                              f"Gửi yêu cầu với Content-Type: {QUERY_TYPE}. "
                              f"(send a TimeStampReq as {QUERY_TYPE})")
    too_big = error_response(413, "request_too_large",
                             f"Yêu cầu quá lớn (tối đa {limit} byte). "
                             f"(request larger than {limit} bytes)")
    if request.content_length is not None and request.content_length > limit:
        return too_big
    body = request.stream.read(limit + 1)
    if len(body) > limit:
        return too_big
    try:
        tsa = kyso.tsa()
    except (SignerError, HsmError) as exc:
        log.error("TSA unavailable: %s", exc)
        return _reply(rejection(SYSTEM_FAILURE, "timestamping service unavailable"))
    return _reply(tsa.respond(body))
