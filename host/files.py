"""Output files: checked before any work, written atomically (a temporary name in the same
directory, then rename)."""

import contextlib
import os
import tempfile

__all__ = ["atomic_write", "check_output_path"]


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Open a temporary file beside ``path``; on success rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is left untouched, so
    an interrupted or failed run leaves no partial output.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


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
