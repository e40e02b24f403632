"""Concurrency, dead sessions, unavailable tokens, fork and PIN handling against real SoftHSM2."""

import logging
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from hsm_test_constants import DOOMED_LABEL, PIN_LABEL, USER_PIN

from hsm import HsmPinIncorrect, KeySpec, Token, TokenUnavailable

DATA = b"concurrent"


def _sign(key, data):
    if key.spec.kind == "ec":
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    return key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def _verify(key, signature, data):
    if key.spec.kind == "ec":
        key.public_key().verify(signature, data, ec.ECDSA(hashes.SHA256()))
    else:
        key.public_key().verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


def test_eight_threads_sign_concurrently(keys):
    chosen = [keys["ec-p256"], keys["rsa-2048"], keys["ec-p384"]]
    results: list[tuple[object, bytes, bytes]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(n: int) -> None:
        barrier.wait()
        try:
            for i in range(60):
                key = chosen[(n + i) % len(chosen)]
                data = f"{n}-{i}".encode()
                results.append((key, data, _sign(key, data)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 480
    for key, data, signature in results:
        _verify(key, signature, data)


def test_session_closed_behind_our_back(token, keys):
    key = keys["ec-p256"]
    _sign(key, DATA)
    token._idle[-1].session.close()  # C_CloseSession on a pooled session
    _verify(key, _sign(key, DATA), DATA)


def test_all_sessions_closed_and_logged_out(token, keys):
    key = keys["rsa-2048"]
    _sign(key, DATA)
    slot_id = token._find_token().slot.slot_id
    assert token._lib.raw.close_all_sessions(slot_id) == 0  # also logs the user out
    _verify(key, _sign(key, DATA), DATA)
    assert token.find_key(label="key-rsa-2048").key_id == key.key_id


def test_unknown_token_label_is_unavailable(softhsm):
    started = time.monotonic()
    with pytest.raises(TokenUnavailable) as info:
        Token(softhsm.module, "no-such-token", USER_PIN, timeout=2)
    assert info.value.http_status == 503 and info.value.code == "hsm_unavailable"
    assert time.monotonic() - started < 2


def test_pool_exhaustion_times_out(softhsm, keys):
    small = Token(softhsm.module, softhsm.label, USER_PIN, pool_size=1, timeout=0.5)
    key = small.find_key(label="key-ec-p256")
    blob_holder = small._acquire()  # the only session, held
    try:
        started = time.monotonic()
        with pytest.raises(TokenUnavailable):
            _sign(key, DATA)
        assert time.monotonic() - started < 3
    finally:
        small._release(blob_holder)
    _verify(key, _sign(key, DATA), DATA)
    small.close()


def test_token_removed_after_finalize(softhsm, token, keys):
    doomed = Token(softhsm.module, DOOMED_LABEL, USER_PIN, timeout=2)
    key = doomed.generate_key_pair(KeySpec.parse("ec-p256"), "doomed-key")
    _sign(key, DATA)
    # Finalise the module under everyone's feet and delete the token's directory.
    doomed._lib.raw.finalize()
    tokens_dir = Path(softhsm.conf_path).parent / "tokens"
    for sub in tokens_dir.iterdir():
        if DOOMED_LABEL.encode() in (sub / "token.object").read_bytes():
            shutil.rmtree(sub)
    started = time.monotonic()
    with pytest.raises(TokenUnavailable):
        _sign(key, DATA)
    assert time.monotonic() - started < 3
    with pytest.raises(TokenUnavailable):
        doomed.find_key(label="doomed-key")
    # The other token (same module) recovers from the finalisation by itself.
    main_key = keys["ec-p384"]
    _verify(main_key, _sign(main_key, DATA), DATA)
    doomed.close()


def test_fork_child_and_parent_both_sign(token, keys):
    key = keys["ec-p256"]
    _sign(key, DATA)  # the pool is warm in the parent
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read_fd)
            sig = _sign(key, b"from child")
            sig2 = _sign(token.find_key(label="key-rsa-2048"), b"from child")
            os.write(write_fd, len(sig).to_bytes(2, "big") + sig + sig2)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        payload = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    n = int.from_bytes(payload[:2], "big")
    _verify(key, payload[2 : 2 + n], b"from child")
    _verify(keys["rsa-2048"], payload[2 + n :], b"from child")
    _verify(key, _sign(key, DATA), DATA)  # parent still fine


def test_wrong_pin(softhsm, caplog):
    wrong = "wrong-pin-31337"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(HsmPinIncorrect) as info:
        Token(softhsm.module, PIN_LABEL, lambda: wrong, timeout=2)
    assert info.value.http_status == 403
    assert wrong not in str(info.value) and wrong not in repr(info.value)
    assert wrong not in caplog.text
    assert USER_PIN not in caplog.text
    # The right PIN (given as a callable) still works afterwards.
    ok = Token(softhsm.module, PIN_LABEL, lambda: USER_PIN, timeout=2)
    assert not ok.has_key("anything")
    ok.close()
