"""Output files: checked before any work, written atomically (a temporary name in the same
directory, then rename: :func:`systolic.hw.util.files.atomic_write`, re-exported here)."""

import os
import tempfile

from systolic.hw.util.files import atomic_write  # the one copy, shared with hw and sim

__all__ = ["atomic_write", "check_output_path"]


def check_output_path(path, option):
    """Check, before any work, that ``path`` can be written (by ``atomic_write``).

    Nothing is created: the file must not be a directory, and the nearest existing
    directory above it must be a directory we can create files in (a probe file is
    made there and removed).

    Raises
    ------
    ValueError
        Naming ``option`` and the path, with what is wrong.
    """
    if not path:
        raise ValueError(f"{option}: empty path")
    full = os.path.abspath(path)
    if os.path.isdir(full):
        raise ValueError(f"{option} {path}: is a directory")
    parent = os.path.dirname(full)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(
            f"{option} {path}: cannot create a directory under {parent}, which is not a directory"
        )
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ValueError(
            f"{option} {path}: cannot write in {parent} ({exc.strerror or type(exc).__name__})"
        ) from None
    if os.path.exists(full) and not os.access(full, os.W_OK):
        raise ValueError(f"{option} {path}: file is not writable")
