"""The responder of one process: maps CertIDs to CAs, answers from memory, from the pre-signed
responses in the database, or signs; follows status changes made by other processes.

Memory: `_fast` maps the exact request (GET path or POST body) to its answer, so a repeated
request costs one dict lookup; `_single` maps (CA, serial, CertID algorithm) to the
pre-signed answer. A status change anywhere (ca.authority revoke/hold/release) writes a row to
ocsp_changes in the same transaction; each process reads the rows after the last id it saw at
most every `change_poll_seconds` and drops those certificates from memory. While the database
is unreachable, what is in memory is served until its nextUpdate; the rest gets tryLater.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

from ca import store
from ca.db import READ_ONLY
from ca.models import CARecord
from ocsp.errors import MalformedRequest
from ocsp.protocol import (
    HASHES,
    INTERNAL_ERROR,
    MALFORMED,
    TRY_LATER,
    UNAUTHORIZED,
    UNKNOWN,
    CertRequest,
    IssuerHashes,
    ParsedRequest,
    Signer,
    Status,
    cert_id_for,
    parse_request,
    sign_response,
    single_response,
)
from ocsp.refresh import Policy, Responders, cert_state, response_row, status_of

log = logging.getLogger("kyso.ocsp")

CA_RELOAD_SECONDS = 60.0
SIGNER_RECHECK_SECONDS = 60.0
DB_RETRY_SECONDS = 5.0
# A change id skipped by the feed (committed out of id order by a concurrent transaction on
# PostgreSQL, or rolled back) is looked for this long; more than MAX_CHANGE_GAPS of them and
# the process drops everything it holds instead.
CHANGE_LOOKBACK_SECONDS = 120.0
MAX_CHANGE_GAPS = 256


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Answer:
    """A response ready for HTTP: body and, when cacheable, its validity and validators."""

    body: bytes
    cacheable: bool = False
    next_update: float = 0.0  # epoch seconds
    produced: float = 0.0
    etag: str = ""
    certs: tuple[tuple[int, str], ...] = ()
    status: str = "error"  # successful | malformed | unauthorized | try_later | ...
    headers: tuple[tuple[str, str], ...] = ()
    # Until when this process may serve it from memory (epoch seconds; 0: until nextUpdate).
    # An answer saying "unknown" is held only until the next change poll: a certificate
    # issued meanwhile must not read "unknown" for unknown_validity_seconds.
    memory_until: float = 0.0
    max_age: int | None = None  # a cap on Cache-Control max-age (None: up to nextUpdate)
    header_bytes: bytes = b""  # `headers` as HTTP/1.1 header lines (the worker's fast path)
    etag_bytes: bytes = b""

    def __post_init__(self) -> None:
        base = [("Content-Type", "application/ocsp-response"),
                ("Content-Length", str(len(self.body))),
                ("X-Content-Type-Options", "nosniff")]
        if self.cacheable:
            self.etag = '"' + hashlib.sha1(self.body).hexdigest() + '"'
            base += [("ETag", self.etag),
                     ("Last-Modified", formatdate(self.produced, usegmt=True)),
                     ("Expires", formatdate(self.next_update, usegmt=True))]
        if not self.memory_until:
            self.memory_until = self.next_update
        self.headers = tuple(base)
        self.header_bytes = "".join(f"{k}: {v}\r\n" for k, v in base).encode("latin-1")
        self.etag_bytes = self.etag.encode("latin-1")


ERROR_ANSWERS = {
    "malformed": Answer(MALFORMED, status="malformed"),
    "unauthorized": Answer(UNAUTHORIZED, status="unauthorized"),
    "try_later": Answer(TRY_LATER, status="try_later"),
    "internal": Answer(INTERNAL_ERROR, status="internal"),
}


def _signed(body: bytes, this_update: datetime, next_update: datetime,
            certs: tuple[tuple[int, str], ...], cacheable: bool = True,
            unknown_until: float | None = None) -> Answer:
    """`unknown_until`: the answer says "unknown" somewhere; hold it (memory and HTTP caches)
    only that long."""
    if unknown_until is None:
        return Answer(body, cacheable=cacheable, next_update=next_update.timestamp(),
                      produced=this_update.timestamp(), certs=certs, status="successful")
    age = max(1, math.ceil(unknown_until - time.time()))
    return Answer(body, cacheable=cacheable, next_update=next_update.timestamp(),
                  produced=this_update.timestamp(), certs=certs, status="successful",
                  memory_until=unknown_until, max_age=age)


@dataclass(frozen=True)
class _CA:
    record: CARecord
    hashes: IssuerHashes


class Responder:
    """One per process (built after fork). Not tied to HTTP: ocsp.wsgi speaks HTTP."""

    def __init__(self, authority: Any, policy: Policy,
                 clock: Callable[[], datetime] = _utcnow) -> None:
        self.authority = authority
        self.policy = policy
        self.clock = clock
        self.responders = Responders(authority, policy)
        self._ro_engine = authority.engine.execution_options(**{READ_ONLY: True})
        self._lock = threading.RLock()
        self._issuers: dict[tuple[str, bytes, bytes], _CA] = {}
        self._cas_loaded = -1e9
        self._signers: dict[int, tuple[Signer | None, float]] = {}
        self._fast: dict[Hashable, Answer] = {}
        self._single: dict[tuple[int, str, str], Answer] = {}
        self._by_cert: dict[tuple[int, str], list[Hashable]] = {}
        # Certificate statuses for live-signed answers: (CA id, serial) -> (status, held
        # until). Good and revoked are held until the change feed names the certificate,
        # unknown only until the next poll; all of it only while the feed is being read.
        self._status: dict[tuple[int, str], tuple[Status, float]] = {}
        self._generation = 0  # bumped whenever something is dropped from memory
        self._feed_ok = False  # the last poll of the change feed succeeded
        self._last_change: int | None = None
        self._gaps: dict[int, float] = {}  # change ids skipped -> when first missed
        self._next_poll = 0.0
        self._db_down_logged = 0.0

    # -- memory ---------------------------------------------------------------------------

    def cached(self, key: Hashable) -> Answer | None:
        """The answer to exactly this request, if held and still before its nextUpdate (and,
        for one saying "unknown", before the next change poll)."""
        now = time.time()
        if now >= self._next_poll:
            self._poll(now)
        answer = self._fast.get(key)
        if answer is None or answer.memory_until <= now or answer.next_update <= now:
            return None
        return answer

    def _remember(self, key: Hashable | None, answer: Answer) -> None:
        if key is None or not answer.cacheable:
            return
        if len(self._fast) >= self.policy.cache_entries:
            self._fast.clear()
            self._by_cert.clear()
        self._fast[key] = answer
        for cert in answer.certs:
            self._by_cert.setdefault(cert, []).append(key)

    def _forget(self, ca_id: int, serial: str) -> None:
        self._generation += 1
        self._status.pop((ca_id, serial), None)
        for key in self._by_cert.pop((ca_id, serial), ()):
            self._fast.pop(key, None)
        for algorithm in HASHES:
            self._single.pop((ca_id, serial, algorithm), None)

    def _poll(self, now: float) -> None:
        """Read the status changes made since the last poll; drop them from memory.

        Ids skipped on the way (a concurrent transaction that has not committed yet, or one
        rolled back) are asked for again on every poll for CHANGE_LOOKBACK_SECONDS; if there
        are too many to follow, everything is dropped from memory instead (always safe)."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            self._next_poll = now + self.policy.change_poll_seconds
            gaps = self._gaps
            with self._ro_engine.connect() as conn:
                if self._last_change is None:
                    last = store.ocsp_last_change_id(conn)
                    start = max(0, last - MAX_CHANGE_GAPS)
                    present = set(store.ocsp_change_ids_after(conn, start))
                    for missing in range(start + 1, last + 1):
                        if missing not in present:
                            gaps[missing] = now
                    self._last_change = last
                    self._feed_ok = True
                    return
                changes = store.ocsp_changes_since(conn, self._last_change)
                late = store.ocsp_changes_by_id(conn, list(gaps)) if gaps else []
            for change_id, ca_id, serial in late:
                gaps.pop(change_id, None)
                self._forget(ca_id, serial)
            expected = self._last_change + 1
            for change_id, ca_id, serial in changes:
                if change_id - expected > MAX_CHANGE_GAPS:
                    self._forget_all()
                else:
                    for missing in range(expected, change_id):
                        gaps[missing] = now
                expected = change_id + 1
                self._forget(ca_id, serial)
                self._last_change = change_id
            if gaps:
                for change_id in [i for i, at in gaps.items()
                                  if at < now - CHANGE_LOOKBACK_SECONDS]:
                    del gaps[change_id]
                if len(gaps) > MAX_CHANGE_GAPS:
                    self._forget_all()
                    gaps.clear()
            self._feed_ok = True
        except Exception:  # noqa: BLE001 - the database is down: serve from memory
            self._next_poll = now + DB_RETRY_SECONDS
            if self._feed_ok:
                # Statuses are trusted only while the feed is read: live answers need the
                # database again (pre-signed answers are served until their nextUpdate).
                self._feed_ok = False
                self._status.clear()
                self._generation += 1
            self._database_down()
        finally:
            self._lock.release()

    def _forget_all(self) -> None:
        self._generation += 1
        self._status.clear()
        self._fast.clear()
        self._by_cert.clear()
        self._single.clear()

    def _database_down(self) -> None:
        self._trouble("OCSP: database unreachable; answering from memory")

    def _trouble(self, message: str) -> None:
        """Log with the traceback at most once a minute (an outage must not flood the log)."""
        now = time.monotonic()
        if now - self._db_down_logged > 60:
            self._db_down_logged = now
            log.warning(message, exc_info=True)

    # -- answering ------------------------------------------------------------------------

    def respond(self, der: bytes, key: Hashable | None = None) -> Answer:
        """Answer one DER request (never raises for bad input). `key` names the request for
        the memory cache (the GET path or the POST body)."""
        try:
            request = parse_request(der, max_certs=self.policy.max_request_certs)
        except MalformedRequest:
            return ERROR_ANSWERS["malformed"]
        return self.answer(request, key)

    def answer(self, request: ParsedRequest, key: Hashable | None = None) -> Answer:
        now_ts = time.time()
        if now_ts >= self._next_poll:
            self._poll(now_ts)
        try:
            ca = self._ca_of(request)
            if ca is None:
                return ERROR_ANSWERS["unauthorized"]
            signer = self._signer(ca.record)
            if signer is None:
                return ERROR_ANSWERS["unauthorized"]
        except Exception:  # noqa: BLE001 - database or HSM trouble
            log.warning("OCSP: cannot find the CA or its responder", exc_info=True)
            return ERROR_ANSWERS["try_later"]
        nonce = request.nonce_extn_value if self.policy.nonce_echo else None
        try:
            if nonce is None and len(request.certs) == 1:
                answer = self._presigned(ca, signer, request.certs[0])
            else:
                answer = self._live(ca, signer, request, nonce)
        except Exception:  # noqa: BLE001 - database or HSM trouble
            self._trouble("OCSP: cannot answer now; tryLater")
            return ERROR_ANSWERS["try_later"]
        if nonce is None:
            self._remember(key, answer)
        return answer

    def _ca_of(self, request: ParsedRequest) -> _CA | None:
        found: _CA | None = None
        for cert in request.certs:
            triple = (cert.hash_algorithm, cert.issuer_name_hash, cert.issuer_key_hash)
            ca = self._issuers.get(triple)
            if ca is None and time.monotonic() - self._cas_loaded > CA_RELOAD_SECONDS:
                self._load_cas()
                ca = self._issuers.get(triple)
            if ca is None or (found is not None and ca is not found):
                return None  # not ours, or several CAs (one responder signs per response)
            found = ca
        return found

    def _load_cas(self) -> None:
        with self.authority.readers() as s:
            records = [r for r in store.list_cas(s) if r.status == "active"]
        issuers = {}
        for record in records:
            ca = _CA(record, IssuerHashes.of(record.cert_der))
            for triple in ca.hashes.triples:
                issuers[triple] = ca
        self._issuers = issuers
        self._cas_loaded = time.monotonic()

    def _signer(self, ca: CARecord) -> Signer | None:
        signer, checked = self._signers.get(ca.id, (None, -1e9))
        now = self.clock()
        if (time.monotonic() - checked < SIGNER_RECHECK_SECONDS
                and (signer is None or signer.not_after > now)):
            return signer
        with self._lock:
            signer = self.responders.current(ca, now)
            if signer is None and self.authority.is_online(ca):
                # First use of an online CA without a responder: make one (audited).
                signer = self.responders.ensure(ca, now, renew=False)
            self._signers[ca.id] = (signer, time.monotonic())
        return signer

    def _unknown_until(self, now_ts: float) -> float:
        """How long an "unknown" answer may be held: until the next change poll."""
        return now_ts + self.policy.change_poll_seconds

    def _presigned(self, ca: _CA, signer: Signer, cert: CertRequest) -> Answer:
        """A single-certificate request without nonce: memory, then the database, then sign
        (and store, for every other process)."""
        ca_id, serial, algorithm = ca.record.id, cert.serial_hex, cert.hash_algorithm
        canonical = cert_id_for(algorithm, ca.hashes, cert.serial).dump()
        if canonical != cert.cert_id_der:
            # A CertID encoded unlike ours (e.g. no NULL hash parameters): echo it, sign live.
            return self._live(ca, signer, ParsedRequest((cert,), None), None)
        now = self.clock()
        now_ts = now.timestamp()
        margin = self.policy.refresh_margin / 2
        held = self._single.get((ca_id, serial, algorithm))
        if (held is not None and held.next_update - now_ts > margin.total_seconds()
                and held.memory_until > now_ts):
            return held
        try:
            with self._ro_engine.connect() as conn:
                found = store.ocsp_lookup(conn, ca_id, [serial], algorithm).get(serial)
        except Exception:  # noqa: BLE001 - database down: what we hold is still valid
            if held is not None and held.next_update > now_ts and held.memory_until > now_ts:
                self._database_down()
                return held
            raise
        certs = ((ca_id, serial),)
        if found is None or not found.issued or found.status not in ("valid", "revoked", "hold"):
            until = now + self.policy.unknown_validity
            body = sign_response(signer, [single_response(canonical, UNKNOWN, now, until)], now)
            answer = _signed(body, now, until, certs, unknown_until=self._unknown_until(now_ts))
        else:
            state = cert_state(found.status, found.revoked_at, found.revocation_reason)
            if (found.stored_der is not None and found.stored_state == state
                    and found.stored_next_update is not None
                    and found.stored_this_update is not None
                    and found.stored_next_update - now > margin):
                answer = _signed(found.stored_der, found.stored_this_update,
                                 found.stored_next_update, certs)
            else:
                until = min(now + self.policy.response_validity, signer.not_after)
                status = status_of(found.status, found.revoked_at, found.revocation_reason)
                row = response_row(ca_id, serial, algorithm, state, signer,
                                   single_response(canonical, status, now, until), now, until)
                try:
                    with self.authority.engine.begin() as conn:
                        store.ocsp_store_responses(conn, [row])
                except Exception:  # noqa: BLE001 - still answer; the next miss stores it
                    log.warning("OCSP: could not store a pre-signed response", exc_info=True)
                answer = _signed(row["der"], now, until, certs)
        if len(self._single) >= self.policy.cache_entries:
            self._single.clear()
        self._single[(ca_id, serial, algorithm)] = answer
        return answer

    def _statuses(self, ca_id: int, serials: list[str], now_ts: float) -> list[Status]:
        """The status of each serial: from memory while the change feed is read, otherwise
        one indexed query (whose results are remembered unless something was dropped from
        memory meanwhile: a read racing a revocation must not be kept)."""
        held = self._status
        out: list[Status | None] = []
        missing = []
        for serial in serials:
            entry = held.get((ca_id, serial)) if self._feed_ok else None
            if entry is not None and entry[1] > now_ts:
                out.append(entry[0])
            else:
                out.append(None)
                missing.append(serial)
        if not missing:
            return out  # type: ignore[return-value]
        generation = self._generation
        with self._ro_engine.connect() as conn:
            rows = store.ocsp_statuses(conn, ca_id, missing)
        found = {}
        for serial, status, revoked_at, reason, issued in rows:
            if issued and status in ("valid", "revoked", "hold"):
                found[serial] = status_of(status, revoked_at, reason)
        keep = self._feed_ok and generation == self._generation
        if keep and len(held) + len(missing) > self.policy.cache_entries:
            held.clear()
        unknown_until = self._unknown_until(now_ts)
        for i, serial in enumerate(serials):
            if out[i] is None:
                status = found.get(serial, UNKNOWN)
                out[i] = status
                if keep:
                    held[(ca_id, serial)] = (
                        status, unknown_until if status.kind == "unknown" else math.inf)
        return out  # type: ignore[return-value]

    def _live(self, ca: _CA, signer: Signer, request: ParsedRequest,
              nonce: bytes | None) -> Answer:
        """Sign now: a nonce to echo, several certificates, or an unusual CertID encoding."""
        now = self.clock()
        now_ts = now.timestamp()
        ca_id = ca.record.id
        certs = request.certs
        statuses = self._statuses(ca_id, [c.serial_hex for c in certs], now_ts)
        until = min(now + self.policy.response_validity, signer.not_after)
        unknown_until = None
        singles = []
        for cert, status in zip(certs, statuses, strict=True):
            if status.kind == "unknown":
                unknown_until = self._unknown_until(now_ts)
                cert_until = now + self.policy.unknown_validity
                until = min(until, cert_until)
            else:
                cert_until = until
            singles.append((cert.cert_id_der, status, cert_until))
        body = sign_response(signer, [single_response(c, s, now, u) for c, s, u in singles],
                             now, nonce)
        return _signed(body, now, until, tuple((ca_id, c.serial_hex) for c in certs),
                       cacheable=nonce is None, unknown_until=unknown_until)


def max_age(answer: Answer, now: float) -> int:
    return max(0, int(answer.next_update - now))


__all__ = ["Answer", "Responder", "max_age"]
