"""Atomic file writes, and torch files read safely with errors that say what the file should be.

Writes go to a temporary file beside the target, then a rename: an interrupted or failed
write never leaves a half-written artifact at ``path`` (``os.replace`` is atomic on POSIX
and Windows when both names are on one filesystem). The artifact gets the mode a plain
``open(path, "w")`` would give it (``0666`` less the umask), not the temporary file's ``0600``.

This module imports torch only inside :func:`load_torch_file`, so the command line can use
the writers without paying for torch.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from snn.errors import SpikeforgeError


def current_umask() -> int:
    """The process's umask, read without changing it (``Umask:`` of ``/proc/self/status``) where the system
    has it, else set and restored at once."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; on success it is renamed to ``path``, on error removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with contextlib.suppress(FileNotFoundError):  # the writer may have replaced or not created the file
            os.chmod(tmp, 0o666 & ~current_umask())  # mkstemp's 0600 would survive the rename
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def load_torch_file(path: str | os.PathLike, missing: str, unreadable: str, map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: reading the file never runs code from it.

    ``missing`` and ``unreadable`` are the messages of the :class:`SpikeforgeError` raised when
    there is no file at ``path`` or it cannot be unpickled; in them ``{path}`` stands for the
    path and ``{error}`` for the name of the unpickler's exception. Both should name the fix.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise SpikeforgeError(missing.format(path=path))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # noqa: BLE001 - a damaged file can fail anywhere in the unpickler
        raise SpikeforgeError(unreadable.format(path=path, error=type(error).__name__)) from error
