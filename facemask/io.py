"""Files: atomic writes that keep the user's umask, and the CPU count. No torch here, so that light commands
(``facemask score``, ``facemask validate``) start quickly.

Every output facemask writes (checkpoints, metrics, reports, submissions, cache metadata) goes through
:func:`atomic_write`: a temporary file in the same folder, flushed to disk, then renamed over the target, so a
reader never sees half a file and a crash or ``kill -9`` mid-write leaves the previous file intact. A write that
fails (disk full, file-size limit, permissions) is one :class:`FacemaskError` naming the file.
"""
from __future__ import annotations

import errno
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from facemask.errors import FacemaskError

_umask: int | None = None
_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask (read once; os.umask can only be read by setting it, so it is set back at once)."""
    global _umask
    with _umask_lock:
        if _umask is None:
            _umask = os.umask(0o022)
            os.umask(_umask)
    return _umask


def first_line(err: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type when it has none."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def describe_write_error(err: BaseException) -> str:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"{err.strerror} (is the disk full?)"
    if isinstance(err, OSError):
        return err.strerror or first_line(err)
    text = first_line(err)
    if "failed writing" in text or "file write failed" in text:  # torch.save reports ENOSPC this way
        return f"{text} (is the disk full?)"
    return text


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place with the permissions a
    plain ``open()`` would give (0666 minus the umask; mkstemp alone would leave 0600)."""
    path = Path(path)
    if path.is_dir():
        raise FacemaskError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise FacemaskError(f"cannot write {path}: {describe_write_error(err)}") from err
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~current_umask())
        os.replace(tmp_path, path)
    except FacemaskError:
        raise
    except (OSError, RuntimeError) as err:  # RuntimeError: torch.save's wording for a failed write
        raise FacemaskError(f"cannot write {path}: {describe_write_error(err)}") from err
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
