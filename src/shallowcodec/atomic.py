"""Atomic file writes: a file appears whole under its name, or not at all.

Every writer of the package (the CLI's outputs, weights, training checkpoints, the image cache)
goes through :func:`atomic_write`: the content is written to a temporary file in the target's
folder, then renamed over the target (``os.replace``, atomic on POSIX and Windows), so readers
(another process sharing a cache, a resumed run) never see a partial file. :func:`check_output`
is the one check of an output path before the work (an existing file is replaced only with ``--force``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process's umask, read once (reading it means setting it, which is not thread-safe).
UMASK = _read_umask()


def atomic_write(path: str | Path, content: bytes | Callable[[BinaryIO], object], fsync: bool = False) -> None:
    """Write ``content`` (bytes, or a function that writes to a binary file object) to ``path`` atomically.

    The temporary file is ``.<name>.<random>.tmp`` in the same folder; it gets the usual permissions
    (0666 minus the umask) and replaces ``path`` (an existing file included) only once fully written.
    With ``fsync`` its data reach the disk before the rename. On any error, or an interrupt, the
    temporary file is removed and ``path`` is unchanged.

    Raises:
        OSError: the folder does not exist or is not writable, the disk is full, ...; and whatever
            ``content`` raises.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.absolute().parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(content):
                content(f)
            else:
                f.write(content)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def check_output(path: str | Path, force: bool) -> None:
    """Refuse, before any work, an output path that cannot or may not be written: a folder, a file in a
    missing folder, or an existing file unless ``force`` (every command that writes a file checks here).

    Raises:
        ValueError: one line naming the path and the problem.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder")
    if not path.absolute().parent.is_dir():
        raise ValueError(f"cannot write {path}: its folder does not exist")
    if path.exists() and not force:
        raise ValueError(f"{path} exists (use --force to overwrite)")
