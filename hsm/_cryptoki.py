"""Raw ctypes access to a PKCS#11 module's function list, for the calls python-pkcs11 lacks."""

from __future__ import annotations

import ctypes

CK_ULONG = ctypes.c_ulong
CKR_OK = 0x0
CKR_PIN_INCORRECT = 0xA0
CKR_PIN_LOCKED = 0xA4
CKR_USER_ALREADY_LOGGED_IN = 0x100
CKR_USER_PIN_NOT_INITIALIZED = 0x102
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKF_OS_LOCKING_OK = 0x2
CKU_USER = 1


class _InitArgs(ctypes.Structure):
    _fields_ = [
        ("CreateMutex", ctypes.c_void_p),
        ("DestroyMutex", ctypes.c_void_p),
        ("LockMutex", ctypes.c_void_p),
        ("UnlockMutex", ctypes.c_void_p),
        ("flags", CK_ULONG),
        ("pReserved", ctypes.c_void_p),
    ]


# The first entries of CK_FUNCTION_LIST, in the order fixed by the PKCS#11 v2 headers.
_NAMES = [
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
    "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo",
    "C_InitToken", "C_InitPIN", "C_SetPIN", "C_OpenSession", "C_CloseSession",
    "C_CloseAllSessions", "C_GetSessionInfo", "C_GetOperationState", "C_SetOperationState",
    "C_Login", "C_Logout",
]


class _FunctionList(ctypes.Structure):
    _fields_ = [("version", ctypes.c_ubyte * 2)] + [(n, ctypes.c_void_p) for n in _NAMES]


class Cryptoki:
    """The same module python-pkcs11 loaded (dlopen hands back the same library instance)."""

    def __init__(self, path: str) -> None:
        self._dll = ctypes.CDLL(path)
        ptr = ctypes.POINTER(_FunctionList)()
        rv = self._dll.C_GetFunctionList(ctypes.byref(ptr))
        if rv != CKR_OK:
            raise OSError(f"C_GetFunctionList failed: {rv:#x}")
        fl = ptr.contents

        def fn(name: str, *argtypes: type) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
            return ctypes.CFUNCTYPE(CK_ULONG, *argtypes)(getattr(fl, name))

        self._initialize = fn("C_Initialize", ctypes.c_void_p)
        self._finalize = fn("C_Finalize", ctypes.c_void_p)
        self._close_all = fn("C_CloseAllSessions", CK_ULONG)
        self._login = fn("C_Login", CK_ULONG, CK_ULONG, ctypes.c_char_p, CK_ULONG)

    def finalize(self) -> int:
        return int(self._finalize(None))

    def initialize_with_os_locking(self) -> int:
        args = _InitArgs(flags=CKF_OS_LOCKING_OK)
        return int(self._initialize(ctypes.addressof(args)))

    def initialize_plain(self) -> int:
        return int(self._initialize(None))

    def close_all_sessions(self, slot_id: int) -> int:
        return int(self._close_all(slot_id))

    def login_user(self, session_handle: int, pin: str) -> int:
        data = pin.encode("utf-8")
        return int(self._login(session_handle, CKU_USER, data, len(data)))
