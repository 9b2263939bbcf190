"""The command line's errors and file access: one-line errors, reading inputs, checked atomic outputs.

Every output of a command is checked before the work (:func:`shallowcodec.atomic.check_output`: an
existing file is only replaced with ``--force``) and written to a temporary file that is renamed into
place (:func:`shallowcodec.atomic.atomic_write`), so a failure never leaves a partial file.
"""

from __future__ import annotations

import json
from pathlib import Path

from shallowcodec.atomic import atomic_write, check_output
from shallowcodec.images import image_files


class CLIError(Exception):
    """A bad-input error reported as one line with exit code 1."""


class UsageError(CLIError):
    """A bad-usage error (an option's value or combination) reported as one line with exit code 2."""


def write_output(path: Path, data: bytes, force: bool = False) -> None:
    """Write bytes to ``path`` atomically (atomic.py): never a partial file; the file gets the usual
    permissions (0666 minus the umask).

    Raises:
        ValueError: ``path`` exists and ``force`` is false, or is a folder, or its folder is missing.
        CLIError: it cannot be written.
    """
    path = Path(path)
    check_output(path, force)
    try:
        atomic_write(path, data)
    except OSError as e:
        raise CLIError(f"cannot write {path}: {e.strerror or e}") from None


def write_json(path: Path, data: dict, force: bool) -> None:
    """Write ``data`` as indented JSON with a final newline, atomically (see :func:`write_output`)."""
    write_output(path, (json.dumps(data, indent=2) + "\n").encode(), force=force)


def read_bytes(path: Path) -> bytes:
    """Read a file, turning OS errors into a one-line :class:`CLIError`."""
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CLIError(f"cannot read {path}: {e.strerror}") from None


def expand_images(paths: list[Path]) -> list[Path]:
    """Image files named directly, plus the images of named folders (sorted per folder).

    Raises:
        ImageError: a named folder does not exist.
    """
    return [p for path in paths for p in ([Path(path)] if Path(path).is_file() else image_files(path))]
