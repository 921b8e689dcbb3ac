"""Output folders of the command line: checked at once, locked, written as a set.

A verb with an ``--out`` folder (``train``, ``demo``, ``convert``, ``energy --out``) runs in
:func:`run_in`:

* **Checked before any work**: an ``--out`` that is a file, lies below a file, or cannot be
  written (tried with a real write, since ``os.access`` says yes to root) is a one-line
  :class:`~snn.errors.SpikeforgeError` before anything else happens.
* **Locked**: the run creates the folder and holds an exclusive ``flock`` on
  ``<out>/.snn.lock`` (its pid written in it) until it ends; a second run into the same
  folder fails at once with kind ``busy``, naming the holder's pid. The lock file is removed
  when the run ends (a run that finds the file replaced under it retries).
* **Written as a set**: the verb writes into ``<out>/.staging-<pid>``; on success every file of
  it is moved into ``<out>`` (sub-folders too) and the staging folder removed; paths in the
  verb's result (and in the JSON, Markdown and text files it wrote) that name the staging
  folder are rewritten to the final folder. On failure the staging folder is deleted, unless
  the error has ``keep_partial`` (a diverged training keeps its last good checkpoint): then it
  is committed like a success. Nothing of a failed run appears in ``<out>``; the folders a failed
  run created are removed again.
* **Stale leftovers** of killed runs (``.staging-*`` folders, ``.*.tmp`` files) are removed once
  the lock is held: no live run owns them then.

Only the standard library (and :mod:`snn.errors`, :mod:`snn.fileio`): building the parser and
checking the folder cost nothing at start-up.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, TypeVar

from snn.errors import SpikeforgeError
from snn.fileio import write_text

try:  # POSIX; elsewhere the folder is used without a lock
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".snn.lock"
STAGING_PREFIX = ".staging-"
TEXT_SUFFIXES = (".json", ".md", ".txt", ".csv", ".html")  # files whose staging paths are rewritten on commit
MAX_REWRITE_BYTES = 64 << 20

T = TypeVar("T")


def _below_file(path: Path) -> Path | None:
    """The nearest ancestor of ``path`` (or ``path`` itself) that exists and is not a folder, if any."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def check_out_file(path: str | os.PathLike, what: str = "file", example: str = "out.bin",
                   option: str = "--out") -> Path:
    """Check, before any work, that the file ``path`` can be written: it is not a folder, no ancestor of it is a
    file, and its nearest existing folder takes a (test) file."""
    target = Path(path)
    if target.is_dir():
        raise SpikeforgeError(f"{option} {target} is a folder; name the {what} to write (e.g. {target / example})")
    blocker = _below_file(target.parent)
    if blocker is not None:
        raise SpikeforgeError(f"{option} {target} is below the file {blocker}; name a {what} in a folder")
    folder = next(p for p in (target.parent, *target.parent.parents) if p.is_dir())
    probe = folder / f".snn-write-test-{os.getpid()}.tmp"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise SpikeforgeError(f"{option} {target}: cannot write in {folder} ({error.strerror}); name a {what} in a "
                              "folder you can write to") from error
    return target


class OutFolder:
    """One run's hold on an output folder: :meth:`open`, then :meth:`commit` or :meth:`fail`, then :meth:`close`."""

    def __init__(self, path: str | os.PathLike, option: str = "--out") -> None:
        self.path = Path(path)
        self.option = option
        self.staging = self.path / f"{STAGING_PREFIX}{os.getpid()}"
        self._fd: int | None = None
        self._created: list[Path] = []
        self._forms: list[tuple[str, str]] = []
        self.committed = False

    # -- opening -------------------------------------------------------------------------------------------------

    def _error(self, message: str, **kwargs: Any) -> SpikeforgeError:
        return SpikeforgeError(f"{self.option} {self.path} {message}", **kwargs)

    def _make(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise self._error("is a file; give a folder")
        blocker = _below_file(self.path)
        if blocker is not None:
            raise self._error(f"is below the file {blocker}; give a folder")
        missing = [p for p in (self.path, *self.path.parents) if not p.exists()]
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._error(f"cannot be created ({error.strerror}); give a folder you can write to") from error
        self._created = missing  # deepest first: the order to remove them in

    def _lock(self) -> None:
        lock = self.path / LOCK_NAME
        for _ in range(10):
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                raise self._error(f"is not writable ({error.strerror}); give a folder you can write to") from error
            if fcntl is None:  # pragma: no cover - Windows
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_pid(fd)
                os.close(fd)
                raise self._error(f"is in use by run pid {holder}; wait for it or choose another folder",
                                  kind="busy") from None
            except OSError:  # a filesystem without flock: run unlocked
                break
            try:  # the holder before us may have removed the file between our open and our lock: lock the new one
                on_disk = os.stat(lock)
                mine = os.fstat(fd)
                if (on_disk.st_ino, on_disk.st_dev) == (mine.st_ino, mine.st_dev):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        else:  # pragma: no cover - ten lock files replaced under us
            raise self._error("keeps changing its lock file; wait for the other runs or choose another folder",
                              kind="busy")
        self._fd = fd
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as error:
            self.close()
            raise self._error(f"is not writable ({error.strerror}); give a folder you can write to") from error

    def _clean_stale(self) -> None:
        for entry in self.path.iterdir():
            name = entry.name
            if name.startswith(STAGING_PREFIX) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            elif name.startswith(".") and name.endswith(".tmp") and entry.is_file() and not entry.is_symlink():
                try:
                    entry.unlink()
                except OSError:
                    pass

    def open(self) -> Path:
        """Check and create the folder, take its lock, clean stale leftovers; return the staging folder."""
        self._make()
        try:
            self._lock()
            self._clean_stale()
            try:
                self.staging.mkdir()
            except OSError as error:
                raise self._error(f"is not writable ({error.strerror}); give a folder you can write to") from error
        except BaseException:
            self.close()
            raise
        pairs = [(str(self.staging), str(self.path)),
                 (str(self.staging.resolve()), str(self.path.resolve()))]
        forms = {a: b for a, b in pairs}
        forms.update({json.dumps(a)[1:-1]: json.dumps(b)[1:-1] for a, b in pairs})  # as JSON files escape them
        self._forms = sorted(forms.items(), key=lambda item: -len(item[0]))
        return self.staging

    # -- results -------------------------------------------------------------------------------------------------

    def rewrite(self, value: T) -> T:
        """``value`` with every mention of the staging folder replaced by the final one (through dicts, lists)."""
        if isinstance(value, str):
            for staged, final in self._forms:
                if staged in value:
                    value = value.replace(staged, final)  # type: ignore[assignment]
            return value
        if isinstance(value, dict):
            return {key: self.rewrite(item) for key, item in value.items()}  # type: ignore[return-value]
        if isinstance(value, list):
            return [self.rewrite(item) for item in value]  # type: ignore[return-value]
        if isinstance(value, tuple):
            return tuple(self.rewrite(item) for item in value)  # type: ignore[return-value]
        return value

    def _rewrite_files(self) -> None:
        for file in self.staging.rglob("*"):
            if file.suffix in TEXT_SUFFIXES and file.is_file() and not file.is_symlink() \
                    and file.stat().st_size <= MAX_REWRITE_BYTES:
                try:
                    text = file.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    continue
                new = self.rewrite(text)
                if new != text:
                    write_text(file, new)

    def commit(self, result: T = None) -> T:  # type: ignore[assignment]
        """Move everything of the staging folder into the folder; return ``result`` with its paths rewritten."""
        try:
            self._rewrite_files()
            _move_into(self.staging, self.path)
        except OSError as error:
            raise self._error(f"could not take this run's files ({error.strerror}: {error.filename}); they are "
                              f"left in {self.staging}") from error
        self.discard()
        self.committed = True
        return self.rewrite(result)

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def fail(self, error: BaseException) -> None:
        """A failed run: discard its files, or commit them if ``error`` says to keep them; the error's message
        names the final folder instead of the staging one."""
        if isinstance(error, SpikeforgeError) and error.args and isinstance(error.args[0], str):
            error.args = (self.rewrite(error.args[0]), *error.args[1:])
        if getattr(error, "keep_partial", False) and self.staging.is_dir():
            try:
                self.commit()
                return
            except SpikeforgeError:
                pass
        self.discard()

    def close(self) -> None:
        """Release the lock (removing the lock file); after a run that committed nothing, remove the folders it
        created if they are empty."""
        if self._fd is not None:
            try:
                os.unlink(self.path / LOCK_NAME)
            except OSError:
                pass
            os.close(self._fd)
            self._fd = None
        for folder in [] if self.committed else self._created:
            try:
                folder.rmdir()
            except OSError:
                break
        self._created = []


def _read_pid(fd: int) -> str:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        text = ""
    return text if text.isdigit() else "unknown"


def _move_into(source: Path, target: Path) -> None:
    """Move every entry of the folder ``source`` into the folder ``target``, merging sub-folders, replacing files."""
    for entry in sorted(source.iterdir()):
        destination = target / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if destination.is_dir() and not destination.is_symlink():
                _move_into(entry, destination)
                continue
            if destination.exists() or destination.is_symlink():
                destination.unlink()
        elif destination.is_dir() and not destination.is_symlink():
            shutil.rmtree(destination)
        os.replace(entry, destination)


def run_in(out: str | os.PathLike, work: Callable[[Path], T], option: str = "--out") -> T:
    """Run ``work(staging_folder)`` with ``out`` held as this run's output folder (see the module's docstring);
    return its result with staging paths rewritten to ``out``."""
    folder = OutFolder(out, option)
    staging = folder.open()
    try:
        try:
            result = work(staging)
        except BaseException as error:
            folder.fail(error)
            raise
        return folder.commit(result)
    finally:
        folder.close()
