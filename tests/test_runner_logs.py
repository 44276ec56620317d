"""A failed simulator run keeps its log, and the error names the kept copy.

The simulator is replaced by a stand-in that writes a log and fails, so no Verilator
build is needed; what is tested is the runner's handling of the run's directories.
"""

import logging
import pathlib

import numpy as np
import pytest

from systolic.hw.config import CoreConfig
from systolic.sim import runner


class _FailingSimulator:
    log = logging.getLogger("test_runner_logs")

    def __init__(self, write_results, exc):
        self.write_results, self.exc = write_results, exc

    def test(self, **kw):
        pathlib.Path(kw["log_file"]).write_text("ERROR  run_program failed: timed out\n")
        if self.write_results:
            pathlib.Path(kw["results_xml"]).write_text(
                '<testsuites><testsuite tests="1" failures="1"/></testsuites>'
            )
        raise self.exc


@pytest.fixture
def fake_sim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # build/ goes under the working directory
    monkeypatch.setattr(
        runner,
        "build",
        lambda cfg, *a, **k: runner.Simulator(cfg, "rtl", "verilator", tmp_path / "bdir"),
    )

    def fail_with(write_results, exc=None):
        fake = _FailingSimulator(write_results, exc or SystemExit(1))
        monkeypatch.setattr(runner, "_cocotb_runner", lambda sim: fake)

    return fail_with


@pytest.mark.parametrize(
    "exc", [SystemExit(1), RuntimeError("Command failed")], ids=["exit", "exit-code"]
)
@pytest.mark.parametrize(
    "write_results, message",
    [
        (True, r"1 of 1 cocotb test\(s\) failed in systolic.sim.player"),
        (False, "verilator run of systolic.sim.player for .* ended without results"),
    ],
)
def test_failed_stream_keeps_its_log(tmp_path, fake_sim, write_results, message, exc):
    fake_sim(write_results, exc)
    cfg = CoreConfig(rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1)
    beats = np.zeros((3, cfg.stream_bytes), np.uint8)
    with pytest.raises(runner.SimError, match=message) as err:
        runner.stream_programs(cfg, [beats], sim="verilator")
    kept = pathlib.Path(str(err.value).rsplit("(log: ", 1)[1].rstrip(")"))
    assert kept.parent == tmp_path / "build" / cfg.tag / "failed"
    assert kept.read_text() == "ERROR  run_program failed: timed out\n"
    assert not list((tmp_path / "build" / cfg.tag / "runs").iterdir())  # player dir removed


def test_failed_run_with_its_own_player_dir(tmp_path, fake_sim):
    fake_sim(True)
    cfg = CoreConfig(rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1)
    with pytest.raises(runner.SimError) as err:
        runner.run(cfg, "no_such_test", sim="verilator")
    kept = pathlib.Path(str(err.value).rsplit("(log: ", 1)[1].rstrip(")"))
    assert kept.exists() and kept.parent.name == "failed"
    assert not list((tmp_path / "bdir" / "runs").glob("player-*"))


def test_keep_log_of_a_log_never_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # build/ goes under the working directory
    missing = tmp_path / "gone" / "x.log"
    assert runner.keep_log(CoreConfig(), missing) == f"{missing} (not written)"


def test_failed_ceiling_keeps_its_output(tmp_path, monkeypatch):
    """Verilator's ceiling that gives up (exit status 1) raises with its output kept."""
    monkeypatch.chdir(tmp_path)  # build/ goes under the working directory
    exe = tmp_path / "ceiling"
    exe.write_text('#!/bin/sh\necho "{\\"done\\": 0, \\"sim_cycles\\": 10000}"\nexit 1\n')
    exe.chmod(0o755)
    monkeypatch.setattr(runner, "build_ceiling", lambda cfg, kind, sources: exe)
    cfg = CoreConfig(rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1)
    beats = np.zeros((3, cfg.stream_bytes), np.uint8)
    with pytest.raises(runner.SimError, match=r"rtl ceiling for .* failed \(exit status 1") as err:
        runner.run_ceiling(cfg, beats)
    kept = pathlib.Path(str(err.value).rsplit("; log: ", 1)[1].rstrip(")"))
    assert kept.parent == tmp_path / "build" / cfg.tag / "failed"
    assert '"done": 0' in kept.read_text()
    assert not list((tmp_path / "build" / cfg.tag / "runs").iterdir())  # run dir removed


def test_results_watch_counts_the_beats_written(tmp_path, capsys):
    """The progress bar of a one-shard run counts the lines the harness has written to
    its results file, before the file exists and after it is moved away."""
    import time

    from systolic.sim.runner import _ResultsWatch

    path = tmp_path / "results.hex"
    watch = _ResultsWatch(path, "rtl 2x2")

    def seen(n, timeout=30.0):  # the bar's count once it reaches n (or the time is up)
        end = time.monotonic() + timeout
        while watch._bar.n < n and time.monotonic() < end:
            time.sleep(0.05)
        return watch._bar.n

    time.sleep(0.7)  # no file yet
    path.write_text("00 0\n" * 5)
    assert seen(5) == 5
    with open(path, "a") as f:
        f.write("01 1\n" * 3)
    assert seen(8) == 8
    path.unlink()  # moved away when the program ends
    time.sleep(0.7)
    watch.stop()
    assert watch._bar.n == 8
    watch2 = _ResultsWatch(tmp_path / "never.hex", "gate 2x2")
    watch2.stop(total=12)  # the run's own count when nothing was read in time
    assert watch2._bar.n == 12
    assert "rtl 2x2 result beats" in capsys.readouterr().err
