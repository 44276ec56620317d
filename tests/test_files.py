"""The one atomic-write helper and the build lock."""

import threading
import time

import pytest

from systolic.host.files import atomic_write as host_atomic_write
from systolic.hw.util.files import atomic_write
from systolic.sim.build import locked


def test_host_reexports_the_one_helper():
    assert host_atomic_write is atomic_write


def test_atomic_write_replaces_on_success(tmp_path):
    path = tmp_path / "sub" / "out.txt"
    with atomic_write(path, "w") as f:
        f.write("one")
        assert not path.exists()  # nothing under the final name until the rename
    assert path.read_text() == "one"
    assert [p.name for p in path.parent.iterdir()] == ["out.txt"]


def test_atomic_write_failure_leaves_old_file(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path) as f:
            f.write(b"new, half")
            raise RuntimeError("boom")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_write_refuses_other_modes(tmp_path):
    with pytest.raises(ValueError, match="mode must be 'w' or 'wb', not 'a'"):
        with atomic_write(tmp_path / "x", "a"):
            pass


def test_locked_excludes_a_second_holder(tmp_path):
    lock = tmp_path / ".x.lock"
    order = []

    def second():
        with locked(lock):
            order.append("second")

    with locked(lock):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first")
    t.join(5)
    assert order == ["first", "second"]
