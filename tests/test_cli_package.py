"""The ``systolic`` command and the package around it: a fast ``--help`` without torch,
plain-text help with one set of option names, the verdict line, the package list."""

import pathlib
import re
import subprocess
import sys
import tomllib

import pytest

from systolic.host.cli import COMMANDS, main
from systolic.host.cli.infer import verdict

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args", [["--help"], ["infer", "--help"], ["train", "--help"]])
def test_help_is_fast_and_loads_no_torch(args):
    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "from systolic.host.cli import main\n"
        f"assert main({args!r}) == 0\n"
        "print(time.perf_counter() - t, 'torch' in sys.modules, 'amaranth' in sys.modules)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    seconds, torch, amaranth = res.stdout.split()[-3:]
    assert (torch, amaranth) == ("False", "False")
    assert float(seconds) < 1.0


def test_python_m_host_is_the_same_group():
    res = subprocess.run(
        [sys.executable, "-m", "systolic.host", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert res.returncode == 0 and "Usage: systolic" in res.stdout
    for name in COMMANDS:
        assert re.search(rf"^  {re.escape(name)}\s", res.stdout, re.M), name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_help_is_plain_text_with_the_common_names(name, capsys):
    assert main([name, "--help"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text and ":mod:" not in text and ":func:" not in text
    assert "--rows" not in text and "--cols" not in text and "--sizes" not in text
    assert "[default:" in text or name in ("formal",)  # defaults are shown


def test_verdict_line():
    r = {
        "backend": "rtl",
        "rows": 8,
        "cols": 8,
        "images": 256,
        "mismatches": 0,
        "error": 0,
        "cycles": 433838,
        "predicted_cycles": 433838,
        "cycles_match": True,
    }
    assert verdict([r]) == "PASS: rtl 8x8, 256 images, 0 mismatches, 433,838 cycles = model"
    bad = {**r, "mismatches": 12, "error": 3, "cycles": 433840, "cycles_match": False}
    assert verdict([bad]) == (
        "FAIL: rtl 8x8, 256 images, 12 mismatches, core error code 3, "
        "433,840 cycles != model 433,838"
    )
    model = {**r, "backend": "model", "images": 1000}
    assert verdict([r, model]) == (
        "PASS: rtl 8x8, 256 images, 0 mismatches, 433,838 cycles = model; "
        "model 8x8, 1,000 images, 0 mismatches, 433,838 cycles"
    )
    assert verdict([model, {**r, "cycles_match": False, "cycles": 1}]).startswith("FAIL: ")


def test_pyproject_lists_every_package():
    """The packages are listed by hand (for the models' data mapping): none forgotten."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(conf["tool"]["setuptools"]["packages"])
    found = {
        ".".join(("systolic", *p.parent.relative_to(ROOT).parts))
        for top in ("host", "hw", "sim")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert listed == found | {"systolic.host.nn._models", "systolic.sim.hdl"}
    assert conf["project"]["scripts"] == {"systolic": "systolic.host.cli:main"}
    assert conf["tool"]["setuptools"]["package-dir"] == {
        **{f"systolic.{top}": top for top in ("host", "hw", "sim")},
        "systolic.host.nn._models": "models",
    }


def test_compile_writes_the_program_the_library_compiles(tmp_path, capsys):
    import numpy as np

    from systolic.host.cli.compile import main as compile_main
    from systolic.host.compile import Program, compile_model
    from systolic.host.nn.bundled import DEFAULT_QUANTIZED_MODELS
    from systolic.host.nn.qmodel import QuantizedModel
    from systolic.hw.config import CoreConfig

    out = tmp_path / "mlp.prog"
    model = DEFAULT_QUANTIZED_MODELS["mlp"]
    args = ["--model", model, "--size", "4x4", "--batch", "16", "--out", str(out)]
    assert compile_main(args) == 0
    assert capsys.readouterr().out.strip().endswith(f"-> {out}")
    cfg = CoreConfig(rows=4, cols=4)
    got = Program.load(str(out), cfg)
    want = compile_model(QuantizedModel.load(model), cfg, 16)
    x = np.random.default_rng(1).integers(-128, 128, (40, 784), dtype=np.int8)
    np.testing.assert_array_equal(got.beats(x), want.beats(x), strict=True)
