"""The calling thread's floating-point environment, saved and restored through C's <fenv.h>.

ONNX Runtime's `session.set_denormal_as_zero` sets the flush-to-zero and denormals-are-zero
flags (x86 MXCSR, Arm FPCR) in its pool threads, and in the creating thread too when it is the
process's first session, for good: every later NumPy computation there would flush subnormal
numbers. `fegetenv`/`fesetenv` save and restore those flags (fenv_t holds MXCSR on x86-64 and
FPCR on aarch64), so the flags apply to the session's own runs only, whichever thread runs them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import struct
from functools import cache

GLIBC_LIBM = "libm.so.6"
ENV_BYTES = 64  # fenv_t is 32 bytes on x86-64 glibc, 8 on aarch64: room for both
# where the flush flags sit in fenv_t: (byte offset of the 32-bit register, its flush bits)
FLUSH_BITS = {
    "x86_64": (28, 0x8040),  # after the 28-byte x87 environment: MXCSR, FTZ (bit 15) | DAZ (bit 6)
    "amd64": (28, 0x8040),
    "aarch64": (0, 1 << 24),  # FPCR first: FZ (bit 24)
    "arm64": (0, 1 << 24),
}


@cache
def _libm():
    # glibc's soname first: ctypes.util.find_library starts ldconfig or gcc in a child process,
    # which an emulated machine without binfmt_misc (`fsanet arm`) cannot run
    name = GLIBC_LIBM if _loadable(GLIBC_LIBM) else ctypes.util.find_library("m")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.fegetenv.argtypes = lib.fesetenv.argtypes = [ctypes.c_void_p]
        lib.fegetenv.restype = lib.fesetenv.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return lib


def _loadable(name: str) -> bool:
    try:
        ctypes.CDLL(name)
    except OSError:
        return False
    return True


def available() -> bool:
    return _libm() is not None


def capture() -> ctypes.Array | None:
    """This thread's floating-point environment (None where libm is not reachable)."""
    lib = _libm()
    if lib is None:
        return None
    env = ctypes.create_string_buffer(ENV_BYTES)
    if lib.fegetenv(env) != 0:
        return None
    return env


def restore(env: ctypes.Array | None) -> None:
    if env is not None:
        _libm().fesetenv(env)


def flushing(env: ctypes.Array | None) -> ctypes.Array | None:
    """A copy of `env` with flush-to-zero and denormals-are-zero on; None where this machine's
    layout is not known (subnormals then stay IEEE: slower on x86, the same angles)."""
    where = FLUSH_BITS.get(platform.machine().lower())
    if env is None or where is None:
        return None
    offset, bits = where
    out = ctypes.create_string_buffer(env.raw, ENV_BYTES)
    (value,) = struct.unpack_from("<I", out.raw, offset)
    struct.pack_into("<I", out, offset, value | bits)
    return out


class Applied:
    """`with Applied(env):` runs the block under `env` and puts the thread's own environment
    back after it (a class with one reused buffer: a few microseconds per call)."""

    def __init__(self, env: ctypes.Array | None):
        self.env = env
        self.saved = ctypes.create_string_buffer(ENV_BYTES) if env is not None else None

    def __enter__(self):
        if self.env is not None:
            lib = _libm()
            lib.fegetenv(self.saved)
            lib.fesetenv(self.env)
        return self

    def __exit__(self, *exc) -> None:
        if self.env is not None:
            _libm().fesetenv(self.saved)
