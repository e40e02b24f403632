"""One PKCS#11 token: module loading, login, thread- and fork-safe session pool, key operations."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pkcs11
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11.constants import DEFAULT
from pkcs11.util.ec import encode_named_curve_parameters

from hsm._cryptoki import (
    CKR_CRYPTOKI_ALREADY_INITIALIZED,
    CKR_OK,
    CKR_PIN_INCORRECT,
    CKR_PIN_LOCKED,
    CKR_USER_ALREADY_LOGGED_IN,
    CKR_USER_PIN_NOT_INITIALIZED,
    Cryptoki,
)
from hsm._storelock import store_lock
from hsm.errors import (
    HsmError,
    HsmPinIncorrect,
    KeyExists,
    KeyNotFound,
    MechanismUnsupported,
    TokenUnavailable,
)
from hsm.keys import HsmECPrivateKey, HsmPrivateKey, HsmRSAPrivateKey
from hsm.keyspec import KeySpec

log = logging.getLogger(__name__)
T = TypeVar("T")
Secret = str | Callable[[], str]
LOGIN_ATTEMPTS = 5  # C_Login answering "PIN not initialized" transiently (see _open_session)

# Errors after which a session (or the whole library) is presumed dead: replace and retry once.
_DEAD = (
    pkcs11.SessionHandleInvalid,
    pkcs11.SessionClosed,
    pkcs11.DeviceError,
    pkcs11.DeviceRemoved,
    pkcs11.TokenNotPresent,
    pkcs11.TokenNotRecognised,
    pkcs11.SlotIDInvalid,
    pkcs11.UserNotLoggedIn,
)
_STALE_HANDLE = (pkcs11.ObjectHandleInvalid, pkcs11.KeyHandleInvalid)


def _not_initialized(exc: BaseException) -> bool:
    # python-pkcs11 maps CKR_CRYPTOKI_NOT_INITIALIZED to a bare PKCS11Error with this text.
    return type(exc) is pkcs11.PKCS11Error and "not initialized" in str(exc)


def _is_dead(exc: BaseException) -> bool:
    return isinstance(exc, _DEAD) or _not_initialized(exc)


def _to_hsm_error(exc: pkcs11.PKCS11Error) -> HsmError:
    if isinstance(exc, pkcs11.PinIncorrect | pkcs11.PinLocked):
        return HsmPinIncorrect()
    if _is_dead(exc):
        return TokenUnavailable(f"HSM token unavailable ({type(exc).__name__})")
    if isinstance(exc, pkcs11.MechanismInvalid | pkcs11.MechanismParamInvalid):
        return MechanismUnsupported(f"mechanism rejected by the HSM ({type(exc).__name__})")
    return HsmError(f"PKCS#11 error: {type(exc).__name__}")


def _reveal(secret: Secret) -> str:
    return secret() if callable(secret) else secret


# --------------------------------------------------------------------------------------------
# The loaded module, one per (path, process).


class _Library:
    """A PKCS#11 module initialised with CKF_OS_LOCKING_OK so sessions can run in parallel.

    python-pkcs11 0.10 calls C_Initialize(NULL), which tells the module the application is
    single-threaded; SoftHSM2 then uses no mutexes and concurrent signing corrupts its heap.
    We re-initialise the same module (dlopen returns the same instance) with OS locking before
    any session exists. If the module refuses, every PKCS#11 call is serialised instead.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.lib = pkcs11.lib(path)  # does C_Initialize(NULL) on first load
        self.raw = Cryptoki(path)
        self.generation = 0
        self.os_locking = False
        self.pid = os.getpid()
        self.call_lock: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        self._reinit()

    def _reinit(self) -> None:
        """C_Finalize + C_Initialize(OS locking). Invalidates every session of every Token."""
        self.raw.finalize()  # CKR_CRYPTOKI_NOT_INITIALIZED is fine here
        rv = self.raw.initialize_with_os_locking()
        if rv in (CKR_OK, CKR_CRYPTOKI_ALREADY_INITIALIZED):
            self.os_locking = rv == CKR_OK or self.os_locking
            self.call_lock = contextlib.nullcontext()
        else:
            log.warning("PKCS#11 module refused OS locking (rv=%#x); serialising calls", rv)
            rv = self.raw.initialize_plain()
            self.os_locking = False
            self.call_lock = threading.RLock()
            if rv not in (CKR_OK, CKR_CRYPTOKI_ALREADY_INITIALIZED):
                raise TokenUnavailable(f"PKCS#11 C_Initialize failed (rv={rv:#x})")
        self.generation += 1
        self.pid = os.getpid()

    def reinitialize(self, seen_generation: int) -> None:
        # Lock order everywhere: the token store's lock, then _LIBS_LOCK.
        with store_lock(self.path), _LIBS_LOCK:
            if self.generation == seen_generation:  # another Token may have done it already
                self._reinit()


_LIBS: dict[str, _Library] = {}
_LIBS_LOCK = threading.RLock()


def _after_fork_in_child() -> None:
    global _LIBS_LOCK
    _LIBS_LOCK = threading.RLock()  # the parent's lock may have been held by another thread


os.register_at_fork(after_in_child=_after_fork_in_child)


def _library(path: str) -> _Library:
    with store_lock(path), _LIBS_LOCK:  # C_Initialize reads every token's files
        lib = _LIBS.get(path)
        if lib is None:
            lib = _LIBS[path] = _Library(path)
        elif lib.pid != os.getpid():
            # Forked child: PKCS#11 requires a fresh C_Initialize; parent sessions are void.
            lib._reinit()
        return lib


# --------------------------------------------------------------------------------------------


@dataclass
class _PooledSession:
    session: Any  # pkcs11.Session
    generation: int
    keys: dict[bytes, Any] = field(default_factory=dict)  # key_id -> private key object


class Token:
    """A logged-in PKCS#11 token with a pool of sessions.

    SoftHSM2 reads SOFTHSM2_CONF once, when the module is first initialised in a process: the
    caller must set it in os.environ before the first Token is made, or pass ``softhsm2_conf``
    (accepted only while the module is not yet loaded, or if it names the same file).

    Construction connects and logs in, so a wrong PIN or missing token fails fast
    (HsmPinIncorrect / TokenUnavailable). Afterwards sessions that die are replaced and the
    operation retried once; waiting for a free session is bounded by ``timeout`` seconds.
    """

    def __init__(
        self,
        module: str,
        token_label: str,
        pin: Secret,
        *,
        pool_size: int = 4,
        so_pin: Secret | None = None,
        timeout: float = 10.0,
        softhsm2_conf: str | os.PathLike[str] | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be at least 1")
        if softhsm2_conf is not None:
            _set_softhsm2_conf(module, str(softhsm2_conf))
        self.module = module
        self.label = token_label
        self._pin = pin
        self._so_pin = so_pin
        self.pool_size = pool_size
        self.timeout = timeout
        self._closed = False
        self._gen_lock = threading.Lock()
        self._reset_pool()
        try:
            self._lib = _library(module)
        except pkcs11.PKCS11Error as exc:
            raise TokenUnavailable(f"cannot load PKCS#11 module ({type(exc).__name__})") from exc
        # Connect now: log in once and keep that session in the pool.
        self._release(self._acquire())

    def __repr__(self) -> str:
        return f"<Token {self.label!r} module={self.module!r}>"

    # ---- pool ---------------------------------------------------------------------------

    def _reset_pool(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._idle: list[_PooledSession] = []
        self._count = 0  # sessions open, idle or in use
        self._p11_token: Any = None

    def _check_fork(self) -> None:
        if self._pid != os.getpid():
            # Parent's sessions and locks mean nothing here; drop them without closing.
            self._reset_pool()
            self._lib = _library(self.module)

    def _find_token(self) -> Any:
        for attempt in range(3):
            generation = self._lib.generation
            try:
                tokens = list(self._lib.lib.get_tokens(token_label=self.label))
            except pkcs11.PKCS11Error as exc:
                raise TokenUnavailable(f"cannot list HSM tokens ({type(exc).__name__})") from exc
            if tokens or attempt == 2:
                break
            # SoftHSM2 reads its token directory at C_Initialize; a token whose files another
            # process was rewriting at that instant is missing until the next one. Only a token
            # this process never had a session on gets here: re-initialising costs nothing.
            time.sleep(0.05 * (attempt + 1))
            self._lib.reinitialize(generation)
        if not tokens:
            raise TokenUnavailable(f"HSM token {self.label!r} not found")
        if len(tokens) > 1:
            raise HsmError(f"several HSM tokens are labelled {self.label!r}")
        return tokens[0]

    def _open_session(self) -> _PooledSession:
        # Listing tokens and logging in read the token's files, and a login rewrites one:
        # another process doing the same at that instant would read half of it.
        with store_lock(self.module):
            return self._open_session_locked()

    def _open_session_locked(self) -> _PooledSession:
        generation = self._lib.generation
        try:
            if self._p11_token is None:
                self._p11_token = self._find_token()
            with self._lib.call_lock:
                session = self._p11_token.open(rw=True)
        except pkcs11.PKCS11Error as exc:
            self._p11_token = None
            if _not_initialized(exc):
                self._lib.reinitialize(generation)
            raise _to_hsm_error(exc) from None
        # Log in through ctypes: python-pkcs11 would leak the session on "already logged in"
        # and its close() would C_Logout every session of the process.
        for attempt in range(LOGIN_ATTEMPTS):
            with self._lib.call_lock:
                rv = self._lib.raw.login_user(session.handle, _reveal(self._pin))
            if rv != CKR_USER_PIN_NOT_INITIALIZED:
                break
            # SoftHSM2 answers this while a process that does not take our store lock (an
            # operator's softhsm2-util or pkcs11-tool) rewrites the token's file: the token is
            # fine a moment later.
            time.sleep(0.05 * (attempt + 1))
        if rv in (CKR_OK, CKR_USER_ALREADY_LOGGED_IN):
            return _PooledSession(session, generation)
        with contextlib.suppress(pkcs11.PKCS11Error):
            session.close()
        if rv in (CKR_PIN_INCORRECT, CKR_PIN_LOCKED):
            raise HsmPinIncorrect()
        raise TokenUnavailable(f"HSM login failed (rv={rv:#x})")

    def _acquire(self) -> _PooledSession:
        self._check_fork()
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                if self._closed:
                    raise HsmError("token has been closed")
                while self._idle:
                    ps = self._idle.pop()
                    if ps.generation == self._lib.generation:
                        return ps
                    self._count -= 1  # from before a re-initialisation: already void
                if self._count < self.pool_size:
                    self._count += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TokenUnavailable("timed out waiting for a free HSM session")
                self._cond.wait(remaining)
        try:
            return self._open_session()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, ps: _PooledSession) -> None:
        with self._cond:
            if self._closed or self._pid != os.getpid():
                self._count -= 1
                self._close_quietly(ps)
            else:
                self._idle.append(ps)
            self._cond.notify()

    def _discard(self, ps: _PooledSession) -> None:
        with self._cond:
            self._count -= 1
            self._cond.notify()
        self._close_quietly(ps)

    def _close_quietly(self, ps: _PooledSession) -> None:
        if ps.generation == self._lib.generation and self._pid == os.getpid():
            with contextlib.suppress(pkcs11.PKCS11Error), self._lib.call_lock:
                ps.session.close()

    def _recover(self, ps: _PooledSession, exc: BaseException) -> None:
        """After a dead-session error: drop the session and its idle siblings, re-init if needed."""
        log.warning("HSM session on token %r failed (%s); replacing it", self.label,
                    type(exc).__name__)
        self._discard(ps)
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for other in idle:
            self._close_quietly(other)
        self._p11_token = None
        if _not_initialized(exc):
            self._lib.reinitialize(ps.generation)

    def _run(self, op: Callable[[_PooledSession], T], *, writes_token: bool = False) -> T:
        """Run ``op`` on a pooled session; on a dead session replace it and retry once.

        ``writes_token``: ``op`` creates token objects, so it holds the store lock (see
        hsm/_storelock.py). Locks are always taken in this order: a pool slot, the store lock,
        the call lock."""
        last: BaseException | None = None
        for _attempt in range(2):
            ps = self._acquire()
            try:
                with (store_lock(self.module) if writes_token else contextlib.nullcontext()), \
                        self._lib.call_lock:
                    result = op(ps)
            except pkcs11.PKCS11Error as exc:
                if _is_dead(exc):
                    self._recover(ps, exc)
                    last = exc
                    continue
                self._release(ps)
                raise _to_hsm_error(exc) from None
            except BaseException:
                self._release(ps)
                raise
            self._release(ps)
            return result
        raise TokenUnavailable(f"HSM token unavailable ({type(last).__name__})") from None

    @contextlib.contextmanager
    def _held_session(self) -> Iterator[_PooledSession]:
        """One pooled session for a multi-step job (session objects live only there)."""
        ps = self._acquire()
        try:
            yield ps
        except pkcs11.PKCS11Error as exc:
            if _is_dead(exc):
                self._recover(ps, exc)
            else:
                self._release(ps)
            raise _to_hsm_error(exc) from None
        except BaseException:
            self._release(ps)
            raise
        else:
            self._release(ps)

    def close(self) -> None:
        """Close every idle session; sessions in use are closed when released."""
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for ps in idle:
            self._close_quietly(ps)

    # ---- lookups ------------------------------------------------------------------------

    @staticmethod
    def _objects(session: Any, attrs: dict[Attribute, Any]) -> list[Any]:
        return list(session.get_objects(attrs))

    def _private_object(self, session: Any, *, label: str | None, key_id: bytes | None) -> Any:
        attrs: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY}
        if label is not None:
            attrs[Attribute.LABEL] = label
        if key_id is not None:
            attrs[Attribute.ID] = key_id
        found = self._objects(session, attrs)
        if not found:
            raise KeyNotFound(f"no private key {label or (key_id or b'').hex()!r} in the HSM")
        if len(found) > 1:
            raise HsmError(f"several private keys match {label or (key_id or b'').hex()!r}")
        return found[0]

    def _token_signer(self, key_id: bytes) -> Callable[[Mechanism, bytes, Any], bytes]:
        def raw_sign(mechanism: Mechanism, data: bytes, param: Any) -> bytes:
            def op(ps: _PooledSession) -> bytes:
                key = ps.keys.get(key_id)
                if key is not None:
                    try:
                        return key.sign(data, mechanism=mechanism, mechanism_param=param)
                    except _STALE_HANDLE:
                        pass  # object re-created behind our back: look it up again
                key = self._private_object(ps.session, label=None, key_id=key_id)
                ps.keys[key_id] = key
                return key.sign(data, mechanism=mechanism, mechanism_param=param)

            return self._run(op)

        return raw_sign

    def _wrap_key_object(self, private: Any, public: Any | None, signer: Any) -> HsmPrivateKey:
        label = private[Attribute.LABEL]
        key_id = private[Attribute.ID]
        if private[Attribute.KEY_TYPE] == KeyType.RSA:
            n = int.from_bytes(private[Attribute.MODULUS], "big")
            e = int.from_bytes(private[Attribute.PUBLIC_EXPONENT], "big")
            pub = rsa.RSAPublicNumbers(e, n).public_key()
            spec = _rsa_spec(pub.key_size)
            return HsmRSAPrivateKey(
                label=label, key_id=key_id, spec=spec, public_key=pub, signer=signer
            )
        if private[Attribute.KEY_TYPE] == KeyType.EC:
            spec = _ec_spec(private[Attribute.EC_PARAMS])
            if public is None:
                raise HsmError(f"public key of {label!r} is missing from the HSM")
            point = _unwrap_octet_string(public[Attribute.EC_POINT])
            pub_ec = ec.EllipticCurvePublicKey.from_encoded_point(spec.curve, point)
            return HsmECPrivateKey(
                label=label, key_id=key_id, spec=spec, public_key=pub_ec, signer=signer
            )
        raise MechanismUnsupported("unsupported key type in the HSM")

    def find_key(self, *, label: str | None = None, key_id: bytes | None = None) -> HsmPrivateKey:
        """The token private key with this label and/or CKA_ID (KeyNotFound if none)."""
        if label is None and key_id is None:
            raise ValueError("give label or key_id")

        def op(ps: _PooledSession) -> HsmPrivateKey:
            private = self._private_object(ps.session, label=label, key_id=key_id)
            kid = private[Attribute.ID]
            ps.keys[kid] = private
            public = None
            if private[Attribute.KEY_TYPE] == KeyType.EC:
                pubs = self._objects(
                    ps.session, {Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.ID: kid}
                )
                public = pubs[0] if len(pubs) == 1 else None
            return self._wrap_key_object(private, public, self._token_signer(kid))

        return self._run(op)

    def has_key(self, label: str) -> bool:
        """True if any object (private, public or secret key) carries this label."""
        return self._run(lambda ps: bool(self._objects(ps.session, {Attribute.LABEL: label})))

    def key_attributes(self, label: str) -> dict[str, bool]:
        """Security attributes of the private (or else secret) key with this label."""
        names = {
            "sensitive": Attribute.SENSITIVE,
            "extractable": Attribute.EXTRACTABLE,
            "always_sensitive": Attribute.ALWAYS_SENSITIVE,
            "never_extractable": Attribute.NEVER_EXTRACTABLE,
            "token": Attribute.TOKEN,
            "private": Attribute.PRIVATE,
            "sign": Attribute.SIGN,
            "decrypt": Attribute.DECRYPT,
            "unwrap": Attribute.UNWRAP,
            "derive": Attribute.DERIVE,
        }
        secret_only = {
            "encrypt": Attribute.ENCRYPT,
            "wrap": Attribute.WRAP,
            "trusted": Attribute.TRUSTED,
        }

        def op(ps: _PooledSession) -> dict[str, bool]:
            kinds = ((ObjectClass.PRIVATE_KEY, {}), (ObjectClass.SECRET_KEY, secret_only))
            for cls, extra in kinds:
                found = self._objects(ps.session, {Attribute.CLASS: cls, Attribute.LABEL: label})
                if len(found) > 1:
                    raise HsmError(f"several keys are labelled {label!r}")
                if found:
                    obj = found[0]
                    return {name: bool(obj[attr]) for name, attr in {**names, **extra}.items()}
            raise KeyNotFound(f"no private or secret key {label!r} in the HSM")

        return self._run(op)

    # ---- key generation -----------------------------------------------------------------

    def generate_key_pair(
        self, spec: KeySpec, label: str, key_id: bytes | None = None
    ) -> HsmPrivateKey:
        """Generate a token key pair (sign-only, sensitive, never extractable).

        Refuses (KeyExists) if anything in the token already carries ``label``: keys are never
        overwritten. ``key_id`` (CKA_ID, shared by both halves) defaults to 16 random bytes.
        """
        if not label:
            raise ValueError("a key label is required")
        kid = key_id if key_id is not None else secrets.token_bytes(16)
        private_template = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
        }
        public_template = {
            Attribute.TOKEN: True,
            Attribute.PRIVATE: False,
            Attribute.VERIFY: True,
            Attribute.ENCRYPT: False,
            Attribute.WRAP: False,
        }

        def op(ps: _PooledSession) -> HsmPrivateKey:
            if self._objects(ps.session, {Attribute.LABEL: label}):
                raise KeyExists(f"a key labelled {label!r} already exists in the HSM")
            if self._objects(ps.session, {Attribute.ID: kid}):
                raise KeyExists(f"a key with id {kid.hex()} already exists in the HSM")
            public, private = _generate(ps.session, spec, kid, label, public_template,
                                        private_template, store=True)
            ps.keys[kid] = private
            return self._wrap_key_object(private, public, self._token_signer(kid))

        with self._gen_lock:  # check-then-create must not race within this process
            return self._run(op, writes_token=True)

    # ---- wrapped (official) keys ----------------------------------------------------------

    def ensure_wrapping_key(self, label: str, *, trusted: bool = False) -> None:
        """Create once an AES-256 token key usable only for wrap/unwrap (idempotent).

        ``trusted=True`` makes it CKA_TRUSTED so wrapped keys can carry CKA_WRAP_WITH_TRUSTED.
        SoftHSM2 lets only the SO set CKA_TRUSTED, and the SO can only create *public*
        (CKA_PRIVATE=False) objects, which SoftHSM2 stores unencrypted on disk and lets any
        unauthenticated session use. So the default is a private, untrusted key; see README.
        """

        def existing(ps: _PooledSession) -> Any | None:
            found = self._objects(
                ps.session, {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
            )
            if len(found) > 1:
                raise HsmError(f"several secret keys are labelled {label!r}")
            if found:
                key = found[0]
                if key[Attribute.KEY_TYPE] != KeyType.AES or not key[Attribute.UNWRAP]:
                    raise HsmError(f"secret key {label!r} is not an AES wrapping key")
                return key
            if self._objects(ps.session, {Attribute.LABEL: label}):
                raise KeyExists(f"a non-secret object labelled {label!r} already exists")
            return None

        with self._gen_lock:
            if self._run(existing) is not None:
                return
            if trusted:
                self._create_trusted_wrapping_key(label)
                return

            def create(ps: _PooledSession) -> None:
                ps.session.generate_key(
                    KeyType.AES, 256, id=secrets.token_bytes(16), label=label, store=True,
                    template={**_WRAPPING_KEY_TEMPLATE, Attribute.PRIVATE: True},
                )

            self._run(create, writes_token=True)

    def _create_trusted_wrapping_key(self, label: str) -> None:
        # The SO must log in, but PKCS#11 login state is per application and our sessions are
        # logged in as USER. A short-lived separate process is its own application.
        if self._so_pin is None:
            raise HsmError("creating a trusted wrapping key needs the SO PIN")
        request = {"module": self.module, "token": self.label, "label": label,
                   "so_pin": _reveal(self._so_pin)}
        proc = subprocess.run(
            [sys.executable, "-m", "hsm._so_tool"], input=json.dumps(request),
            capture_output=True, text=True, timeout=max(self.timeout, 30.0), check=False,
        )
        if proc.returncode != 0:
            code = proc.stdout.strip() or "error"
            if code == "pin_incorrect":
                raise HsmPinIncorrect("HSM SO login failed: PIN incorrect or locked")
            raise HsmError(f"could not create trusted wrapping key ({code})")

    def _wrapping_key(self, session: Any, label: str) -> Any:
        found = self._objects(
            session, {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label}
        )
        if not found:
            raise KeyNotFound(f"no wrapping key {label!r} in the HSM")
        if len(found) > 1:
            raise HsmError(f"several secret keys are labelled {label!r}")
        return found[0]

    def generate_wrapped_key_pair(
        self, spec: KeySpec, wrapping_key_label: str
    ) -> tuple[bytes, rsa.RSAPublicKey | ec.EllipticCurvePublicKey]:
        """Generate a key pair as session objects, wrap the private key (AES-KWP), destroy both.

        Returns (wrapped blob, public key). The private key exists in clear only inside the HSM.
        CKA_WRAP_WITH_TRUSTED is set when the wrapping key is CKA_TRUSTED.
        """

        def op(ps: _PooledSession) -> tuple[bytes, Any]:
            wrapping = self._wrapping_key(ps.session, wrapping_key_label)
            trusted = bool(wrapping[Attribute.TRUSTED])
            private_template = {
                Attribute.TOKEN: False,
                Attribute.PRIVATE: True,
                Attribute.SENSITIVE: True,
                Attribute.EXTRACTABLE: True,
                Attribute.WRAP_WITH_TRUSTED: trusted,
                Attribute.SIGN: True,
                Attribute.DECRYPT: False,
                Attribute.UNWRAP: False,
                Attribute.DERIVE: False,
            }
            public_template = {
                Attribute.TOKEN: False,
                Attribute.PRIVATE: False,
                Attribute.VERIFY: True,
                Attribute.ENCRYPT: False,
                Attribute.WRAP: False,
            }
            public, private = _generate(ps.session, spec, secrets.token_bytes(16), None,
                                        public_template, private_template, store=False)
            try:
                blob = wrapping.wrap_key(private, mechanism=Mechanism.AES_KEY_WRAP_PAD)
                pub = self._wrap_key_object(private, public, None).public_key()
            finally:
                for obj in (private, public):
                    with contextlib.suppress(pkcs11.PKCS11Error):
                        obj.destroy()
            return blob, pub

        return self._run(op)

    @contextlib.contextmanager
    def unwrapped_key(
        self,
        blob: bytes,
        spec: KeySpec,
        wrapping_key_label: str,
        *,
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | None = None,
    ) -> Iterator[HsmPrivateKey]:
        """Unwrap ``blob`` into a sign-only, non-extractable session key, destroyed on exit.

        One pooled session is held for the duration. RSA keys know their public key; an EC
        session key does not (SoftHSM2 keeps no CKA_EC_POINT on private keys), so pass
        ``public_key`` if the caller needs ``public_key()`` on it.
        """
        key_type = KeyType.RSA if spec.kind == "rsa" else KeyType.EC
        template = {
            # python-pkcs11 adds these; SoftHSM2 rejects them on private keys.
            Attribute.ENCRYPT: DEFAULT,
            Attribute.VERIFY: DEFAULT,
            Attribute.WRAP: DEFAULT,
            Attribute.TOKEN: False,
            Attribute.PRIVATE: True,
            Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: False,
            Attribute.SIGN: True,
            Attribute.DECRYPT: False,
            Attribute.UNWRAP: False,
            Attribute.DERIVE: False,
        }
        with self._held_session() as ps:
            lock = self._lib.call_lock
            with lock:
                wrapping = self._wrapping_key(ps.session, wrapping_key_label)
                try:
                    private = wrapping.unwrap_key(
                        ObjectClass.PRIVATE_KEY, key_type, blob,
                        mechanism=Mechanism.AES_KEY_WRAP_PAD, store=False, template=template,
                    )
                except (pkcs11.WrappedKeyInvalid, pkcs11.EncryptedDataInvalid,
                        pkcs11.WrappedKeyLenRange, pkcs11.FunctionFailed,
                        pkcs11.GeneralError) as exc:
                    raise HsmError(
                        f"cannot unwrap key with {wrapping_key_label!r} ({type(exc).__name__})"
                    ) from None
            try:
                if private[Attribute.KEY_TYPE] != key_type:
                    raise HsmError("unwrapped key does not match the expected key spec")

                def raw_sign(mechanism: Mechanism, data: bytes, param: Any) -> bytes:
                    with lock:
                        return private.sign(data, mechanism=mechanism, mechanism_param=param)

                if key_type == KeyType.RSA:
                    key: HsmPrivateKey = self._wrap_key_object(private, None, raw_sign)
                    if key.spec != spec:
                        raise HsmError("unwrapped key does not match the expected key spec")
                else:
                    if _ec_spec(private[Attribute.EC_PARAMS]) != spec:
                        raise HsmError("unwrapped key does not match the expected key spec")
                    key = HsmECPrivateKey(label=None, key_id=b"", spec=spec,
                                          public_key=public_key, signer=raw_sign)
                yield key
            finally:
                with contextlib.suppress(pkcs11.PKCS11Error), lock:
                    private.destroy()


_WRAPPING_KEY_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.WRAP: True,
    Attribute.UNWRAP: True,
    Attribute.ENCRYPT: False,
    Attribute.DECRYPT: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}


def _generate(
    session: Any,
    spec: KeySpec,
    key_id: bytes,
    label: str | None,
    public_template: dict[Attribute, Any],
    private_template: dict[Attribute, Any],
    *,
    store: bool,
) -> tuple[Any, Any]:
    kwargs = {
        "id": key_id, "label": label or "", "store": store,
        "public_template": public_template, "private_template": private_template,
    }
    if spec.kind == "rsa":
        return session.generate_keypair(KeyType.RSA, spec.bits, **kwargs)
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(spec.curve_name)},
        local=True,
    )
    return params.generate_keypair(**kwargs)


def _rsa_spec(bits: int) -> KeySpec:
    try:
        return KeySpec.parse(f"rsa-{bits}")
    except HsmError:
        return KeySpec(name=f"rsa-{bits}", kind="rsa", bits=bits)


def _ec_spec(ec_params: bytes) -> KeySpec:
    for name in ("ec-p256", "ec-p384"):
        spec = KeySpec.parse(name)
        if encode_named_curve_parameters(spec.curve_name) == bytes(ec_params):
            return spec
    raise MechanismUnsupported("unsupported EC curve in the HSM")


def _unwrap_octet_string(data: bytes) -> bytes:
    """CKA_EC_POINT is a DER OCTET STRING around the point (some modules omit the wrapper)."""
    data = bytes(data)
    if len(data) > 2 and data[0] == 0x04:
        length = data[1]
        offset = 2
        if length & 0x80:
            n = length & 0x7F
            length = int.from_bytes(data[2 : 2 + n], "big")
            offset = 2 + n
        if offset + length == len(data):
            return data[offset:]
    return data


def _set_softhsm2_conf(module: str, conf: str) -> None:
    current = os.environ.get("SOFTHSM2_CONF")
    if module in _LIBS and current != conf:
        raise HsmError("SOFTHSM2_CONF cannot change once the module is loaded in this process")
    os.environ["SOFTHSM2_CONF"] = conf


def token_present(module: str, token_label: str) -> bool:
    """Whether a token with this label is in a slot of the module (no login, no session)."""
    try:
        lib = _library(module)
        with store_lock(module):
            return bool(list(lib.lib.get_tokens(token_label=token_label)))
    except pkcs11.PKCS11Error as exc:
        raise TokenUnavailable(f"cannot list HSM tokens ({type(exc).__name__})") from exc


def init_user_pin(module: str, token_label: str, so_pin: Secret, new_pin: Secret) -> None:
    """Set the token's user PIN as the SO (C_InitPIN).

    In this process, on purpose: SoftHSM2 caches a token's PIN data per process, so a PIN set
    elsewhere would not be seen here. PKCS#11 login state is per application, so this process
    must hold no logged-in session on that token (true before a ceremony opens it).
    """
    lib = _library(module)
    with store_lock(module):  # an SO login and C_InitPIN rewrite the token file
        _init_user_pin(lib, token_label, so_pin, new_pin)


def _init_user_pin(lib: _Library, token_label: str, so_pin: Secret, new_pin: Secret) -> None:
    try:
        tokens = list(lib.lib.get_tokens(token_label=token_label))
        if not tokens:
            raise TokenUnavailable(f"HSM token {token_label!r} not found")
        with lib.call_lock:
            session = tokens[0].open(rw=True, so_pin=_reveal(so_pin))
    except (pkcs11.PinIncorrect, pkcs11.PinLocked):
        raise HsmPinIncorrect(f"SO login to token {token_label!r} failed: PIN incorrect "
                              "or locked") from None
    except pkcs11.PKCS11Error as exc:
        raise _to_hsm_error(exc) from None
    try:
        with lib.call_lock:
            session.init_pin(_reveal(new_pin))
    except pkcs11.PKCS11Error as exc:
        raise HsmError(f"could not set the user PIN of token {token_label!r} "
                       f"({type(exc).__name__})") from None
    finally:
        with contextlib.suppress(pkcs11.PKCS11Error), lib.call_lock:
            session.close()
