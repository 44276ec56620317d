"""The build helpers: the artefact cache, the tools' environment, and a real build and
run (the player, and Verilator's ceiling) that leave this process's environment as it
was."""

import os
import pathlib

import numpy as np
import pytest

from systolic.hw.config import CoreConfig
from systolic.sim import build, runner
from systolic.sim.programs import matmul_program, parse_output, reference_matmul


def test_cached_makes_once_per_key(tmp_path):
    target, made = tmp_path / "out" / "a.v", []

    def make():
        made.append(1)
        target.write_text(f"version {len(made)}")

    assert build.cached(target, "k1", make) == target and len(made) == 1
    assert build.cached(target, "k1", make) == target and len(made) == 1  # up to date
    assert (tmp_path / "out" / "a.v.hash").read_text() == "k1"
    build.cached(target, "k2", make)  # a new key
    assert len(made) == 2 and target.read_text() == "version 2"
    target.unlink()  # target gone
    build.cached(target, "k2", make)
    assert len(made) == 3


def test_cached_failed_make_leaves_no_stamp(tmp_path):
    target = tmp_path / "a.v"

    def fail():
        target.write_text("half")
        raise build.SimError("tool failed")

    build.cached(target, "k1", lambda: target.write_text("good"))
    with pytest.raises(build.SimError, match="tool failed"):
        build.cached(target, "k2", fail)
    assert not (tmp_path / "a.v.hash").exists()  # so the next call makes it again
    assert build.cached(target, "k2", lambda: target.write_text("good")).read_text() == "good"
    with pytest.raises(build.SimError, match=r"building .*b\.v did not write it"):
        build.cached(tmp_path / "b.v", "k", lambda: None)


def test_tool_env_is_a_new_dict():
    base = {"PATH": "/usr/bin", "HOME": "/h"}
    env = build.tool_env("verilator", base)
    root = pathlib.Path(env["VERILATOR_ROOT"])
    assert (root / "bin" / "verilator").exists()
    assert env["PATH"] == f"{root / 'bin'}{os.pathsep}/usr/bin"
    assert "CFG_CXXFLAGS_PCH_I=-include" in env["MAKEFLAGS"]
    assert "CFG_CXXFLAGS_COROUTINES=-fcoroutines" in env["MAKEFLAGS"]  # for --timing
    assert base == {"PATH": "/usr/bin", "HOME": "/h"} and "HOME" not in env
    assert build.tool_env("icarus") == {}


def test_files_hash_reads_contents(tmp_path):
    a = tmp_path / "a.v"
    a.write_text("module a; endmodule")
    h = build.files_hash("x", a)
    assert h == build.files_hash("x", a) and len(h) == 16
    a.write_text("module a (); endmodule")
    assert build.files_hash("x", a) != h


@pytest.mark.rtl
def test_build_and_run_leave_os_environ_alone(tmp_path, monkeypatch):
    """A real Verilator build (into an empty build/) and a player run: both work, with
    the tools' environment given to their subprocesses only."""
    monkeypatch.chdir(tmp_path)  # build/ goes under the working directory
    before = dict(os.environ)
    cfg = CoreConfig(rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1)
    simulator = runner.build(cfg)
    assert simulator.build_dir == tmp_path / "build" / cfg.tag / "rtl-verilator"
    assert (simulator.build_dir.parent / "rtl-verilator.hash").exists()
    assert dict(os.environ) == before
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, (3, 5), dtype=np.int8)
    w = rng.integers(-128, 128, (5, 3), dtype=np.int8)
    bias = np.arange(3)
    ((out, report),) = simulator.stream([matmul_program(cfg, a, w, bias)])
    got, status = parse_output(cfg, out, 3, 3, raw=True)
    np.testing.assert_array_equal(got, reference_matmul(a, w, bias), strict=True)
    assert status["error"] == 0 and report["sim_cycles"] > status["cycles"] > 0
    assert dict(os.environ) == before
    assert runner.build(cfg) == simulator  # found built: the same simulator
    # cocotb sees the harness's own signals only, so that Verilator optimizes the core
    (cmdline,) = [
        line
        for line in (simulator.build_dir / "Vtop__verFiles.dat").read_text().splitlines()
        if line.startswith("C ")
    ]
    assert "--public-depth 1" in cmdline and "--public-flat-rw" not in cmdline
    assert "--timing" in cmdline  # the harness's own clock
    # Verilator's ceiling: the same harness driven from C++, the same results and cycles
    ceiling_out, ceiling = runner.run_ceiling(cfg, matmul_program(cfg, a, w, bias))
    np.testing.assert_array_equal(ceiling_out, out, strict=True)
    assert ceiling["sim_cycles"] == report["sim_cycles"] and ceiling["sim_seconds"] > 0
    assert (tmp_path / "build" / cfg.tag / "rtl-ceiling" / "ceiling").exists()
    assert dict(os.environ) == before


@pytest.mark.rtl
def test_waves_build_and_keep_a_waveform(tmp_path, monkeypatch, caplog):
    """WAVES=1: a traced build of its own (the untraced folder is not touched), saying
    that it builds, and a run that keeps a VCD of the simulation in build/<tag>/waves/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WAVES", "1")
    cfg = CoreConfig(rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1)
    with caplog.at_level("WARNING", logger="systolic.sim.runner"):
        simulator = runner.build(cfg)
    assert f"building the Verilator model for {cfg.tag} with waveforms" in caplog.text
    assert simulator.waves and simulator.build_dir.name == "rtl-verilator-waves"
    assert not (tmp_path / "build" / cfg.tag / "rtl-verilator").exists()
    rng = np.random.default_rng(1)
    a = rng.integers(-128, 128, (3, 5), dtype=np.int8)
    w = rng.integers(-128, 128, (5, 3), dtype=np.int8)
    ((out, report),) = simulator.stream([matmul_program(cfg, a, w, np.arange(3))])
    got, _ = parse_output(cfg, out, 3, 3, raw=True)
    np.testing.assert_array_equal(got, reference_matmul(a, w, np.arange(3)), strict=True)
    (vcd,) = (tmp_path / "build" / cfg.tag / "waves").glob("rtl-verilator-play-*.vcd")
    text = vcd.read_text()
    assert "$enddefinitions" in text and "s_axis_tvalid" in text
    # the last time stamp covers the simulated cycles (a clock period of at least 1 ns)
    last = max(int(line[1:]) for line in text.splitlines() if line.startswith("#"))
    assert last >= report["sim_cycles"] * 1000
    monkeypatch.delenv("WAVES")
    assert runner.build_dir(cfg).name == "rtl-verilator"  # the untraced build's folder
