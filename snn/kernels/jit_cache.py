"""numba's on-disk cache, made safe for kernels built per flag setting and for many processes.

Two facts about numba's cache (``numba/core/caching.py``, 0.59 to 0.68) shape this module:

1. The cache entries of one function live under one index file named after its
   ``__qualname__``. A process that stores a new entry reads the index, takes the first free
   data-file number and writes both back, without a lock. Two processes that compile two
   entries of one function at the same moment both take number 1: the index keeps one key,
   the data file the other's machine code, and every later process runs the wrong kernel
   (seen under pytest-xdist as wrong gradients for one reset mode).
2. A closure's cache key includes its pickled cells, and a dispatcher pickles with a random
   per-process UUID: a kernel that calls another kernel misses the cache in every process.

Hence: :func:`cached_jit` gives each kernel built for one flag setting a qualname of its own
(its own index: processes compiling different settings never share one) and a stable
identity; :func:`stable_identity` does the latter for the inline helpers; :func:`call` holds
an inter-process lock (``filelock``, one per flag setting) while a process first calls a
kernel with new argument types, so two processes never extend one index at once. Calls after
the first cost one set lookup.
"""

from __future__ import annotations

import getpass
import hashlib
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
from filelock import FileLock

_LOCK_DIR = Path(tempfile.gettempdir()) / f"spikeforge-numba-{getpass.getuser()}"
_called: set[tuple] = set()  # (kernel id, argument types) this process has called
_lock_names: dict[int, str] = {}  # kernel id -> its lock file's name


def tag(key: Any) -> str:
    """A short file-name-safe text for ``key`` (a tuple of flags): bools as 0/1, ints as digits."""
    def flat(value: Any):
        if isinstance(value, (tuple, list)):
            for item in value:
                yield from flat(item)
        else:
            yield str(int(value))
    return "".join(flat(key)) or "0"


def stable_identity(key: Any, *dispatchers):
    """Give each dispatcher an identity derived from its qualname and ``key``, the same in every
    process (fact 2 of the module docstring). Returns the dispatcher(s)."""
    for dispatcher in dispatchers:
        dispatcher._set_uuid(f"spikeforge:{dispatcher.py_func.__qualname__}:{key!r}")
    return dispatchers[0] if len(dispatchers) == 1 else dispatchers


def cached_jit(key: Any, **options) -> Callable:
    """``numba.njit(cache=True, **options)`` for a kernel built for the flags ``key``: its qualname
    gets ``key``'s :func:`tag` (an index file of its own) before numba names its cache files, and
    :func:`call` serialises its first calls under the lock of ``key``."""
    from numba import njit

    def decorate(function):
        function.__qualname__ = f"{function.__qualname__}_{tag(key)}"
        dispatcher = stable_identity(key, njit(cache=True, **options)(function))
        _lock_names[id(dispatcher)] = _lock_name(function.__module__, key)
        return dispatcher
    return decorate


def _lock_name(module: str, key: Any) -> str:
    return hashlib.sha1(f"{module}:{key!r}".encode()).hexdigest()[:16] + ".lock"


def _type_key(value: Any) -> tuple:
    """What numba's dispatcher tells overloads apart by, for the values our kernels take."""
    if isinstance(value, np.ndarray):
        flags = value.flags
        return (value.dtype.str, value.ndim, flags.c_contiguous, flags.f_contiguous, flags.writeable, flags.aligned)
    return (type(value),)


def call(kernel, *args):
    """``kernel(*args)``; the first call for these argument types holds the kernel's lock (it is
    where numba loads the kernel from its cache or compiles and stores it)."""
    signature = (id(kernel), *map(_type_key, args))
    if signature in _called:
        return kernel(*args)
    _LOCK_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = _lock_names.get(id(kernel)) or _lock_name(kernel.py_func.__module__, kernel.py_func.__qualname__)
    with FileLock(str(_LOCK_DIR / name)):
        result = kernel(*args)
    _called.add(signature)
    return result
