"""Writing output files atomically: a temporary name in the same directory, then a rename.

The one copy of the pattern: ``hw``, ``sim`` and ``host`` all write through
:func:`atomic_write` (``systolic.host.files`` re-exports it), so that an interrupted or failed
run never leaves a half-written file under the final name.
"""

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its directory is created if need be.
    mode : str
        ``"wb"`` (default) or ``"w"``.

    On an exception the temporary file is removed and ``path`` is left untouched, so
    an interrupted or failed run leaves no partial output. The file is made readable
    by all (``0o644``), like one written with ``open``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    name = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
