"""The inference CLI: the report, and clear errors with no output on bad inputs."""

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from systolic.host.cli.infer import main
from systolic.host.nn.checkpoint import Mlp, load_checkpoint, save_checkpoint
from systolic.host.nn.qmodel import QuantizedModel


def test_model_backend_report(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["--backend", "model", "--limit", "200", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["backend"] == "model" and r["images"] == 200 and r["mismatches"] == 0
    assert r["argmax_agreement"] >= 0.999 and abs(r["accuracy"] - r["float_accuracy"]) <= 0.005
    # the counters are consistent: busy and MAC cycles within the program's cycles, and
    # the two utilizations defined by systolic.host.metrics ordered accordingly
    assert r["mac_cycles"] <= r["busy_cycles"] <= r["cycles"]
    assert 0.85 < r["utilization"] <= r["busy_utilization"] <= 1
    assert r["images_per_second_at_clock"] > 0
    for key in (
        "torch_int8_accuracy",
        "cycles_per_image",
        "wall_seconds",
        "clock_mhz",
        "sim_cycles_per_second",
    ):
        assert key in r


def test_cnn_by_name(tmp_path, capsys):
    """``--model cnn``: the checked-in CNN on the whole test split, bit-exact, PyTorch int8
    agreeing, int8 accuracy within half a point of float."""
    out = tmp_path / "r.json"
    assert main(["--model", "cnn", "--backend", "model", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["model"].endswith("cnn.pt") and r["images"] == 1000 and r["mismatches"] == 0
    assert r["argmax_agreement"] >= 0.999 and abs(r["accuracy"] - r["float_accuracy"]) < 0.0051
    assert r["cycles_match"] and r["accuracy"] > 0.9


@pytest.mark.rtl
def test_rtl_backend_small_array(tmp_path):
    out = tmp_path / "r.json"
    assert (
        main(
            [
                "--backend",
                "rtl",
                "--size",
                "4x4",
                "--limit",
                "24",
                "--batch",
                "8",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    r = json.loads(out.read_text())
    assert r["mismatches"] == 0 and r["cycles_match"] and r["sim_cycles_per_second"] > 0


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "systolic.host", "infer", *args], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    "args, message",
    [
        (["--data-dir", "no/such/dir"], "no/such/dir: no such directory"),
        (["--model", "no/such.pt"], "no/such.pt: no such checkpoint"),
        (["--size", "40x8"], "rows must be between 2 and 16, not 40"),
        (["--batch", "2000"], "batch 2000 does not fit"),
        (["--limit", "0"], "--limit must be positive, not 0"),
    ],
)
def test_bad_inputs(tmp_path, args, message):
    out = tmp_path / "r.json"
    res = _cli("--backend", "model", "--json", str(out), *args)
    assert res.returncode == 2
    assert (
        res.stderr.strip().splitlines()[-1] == f"error: {message}"
        or message in res.stderr.strip().splitlines()[-1]
    )
    assert not out.exists() and not list(tmp_path.iterdir())


def test_corrupt_checkpoint(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x80\x02garbage")
    res = _cli("--backend", "model", "--model", str(bad), "--json", str(tmp_path / "r.json"))
    assert res.returncode == 2 and "bad.pt: not a readable checkpoint" in res.stderr
    assert not (tmp_path / "r.json").exists()


def test_clock_from_the_synthesis_report(tmp_path):
    from systolic.host.run import DEFAULT_CLOCK_MHZ, clock_for
    from systolic.hw.config import CoreConfig

    cfg = CoreConfig(rows=8, cols=8)
    base = {
        "family": "ecp5",
        "device": "LFE5U-85F-6BG381C",
        "rows": 8,
        "cols": 8,
        "act_kib": 64,
        "hidden_kib": 32,
        "weight_kib": 96,
        "acc_kib": 32,
    }
    report = tmp_path / "report.json"
    report.write_text(
        json.dumps(
            [
                {**base, "family": "ice40", "fmax_mhz": 20.0},
                {**base, "rows": 4, "cols": 4, "fmax_mhz": 90.0},
                {**base, "pipeline": "shallow", "fmax_mhz": 60.0},
                {**base, "config": "other", "pipeline": "deep", "fmax_mhz": 81.5},
                {**base, "config": cfg.tag, "pipeline": "deep", "fmax_mhz": 77.25},
                {**base, "rows": 16, "cols": 16, "fmax_mhz": None},
            ]
        )
    )
    mhz, source = clock_for(cfg, report=report)
    assert mhz == 77.25 and "LFE5U-85F" in source and "64/32/96/32" in source
    other = CoreConfig(rows=8, cols=8, act_kib=16)  # same size, other buffers
    assert clock_for(other, report=report)[0] == 81.5
    assert clock_for(CoreConfig(rows=8, cols=8, deep_pipeline=False), report=report)[0] == 60.0
    none = str(tmp_path / "no-figures.json")
    assert clock_for(CoreConfig(rows=16, cols=16), report=report, figures=none) == (
        DEFAULT_CLOCK_MHZ,
        "assumed (no synthesis report for this size)",
    )
    assert clock_for(cfg, override="123", report=report) == (123.0, "--clock-mhz")
    report.write_text("[{")  # unreadable: assumed
    assert clock_for(cfg, report=report, figures=none)[0] == DEFAULT_CLOCK_MHZ


def test_clock_from_the_committed_figures(tmp_path):
    """Without a local synthesis report the committed table gives the clock, and says
    when the hardware source is no longer the one it was synthesized from."""
    from systolic.host.run import clock_for
    from systolic.hw.config import CoreConfig
    from systolic.hw.generate import source_hash
    from systolic.hw.synth import figures

    cfg = CoreConfig(rows=8, cols=8)
    other = CoreConfig(rows=8, cols=8, act_kib=16, weight_kib=96)
    entry = {
        "family": "ecp5",
        "device": "LFE5U-85F-6BG381C",
        "rows": 8,
        "cols": 8,
        "config": other.tag,
        "pipeline": "deep",
        "hw_hash": source_hash() + "-0123abcd",
        "fmax_mhz": 101.5,
    }
    path = tmp_path / "figures.json"
    standard = [("ecp5", other)]
    figures.update([entry, {**entry, "config": "not-standard", "fmax_mhz": 1.0}], standard, path)
    no_report = tmp_path / "no-report.json"
    mhz, source = clock_for(cfg, report=no_report, figures=path)
    assert mhz == 101.5 and "committed table" in source and "changed" not in source
    stale = {**entry, "hw_hash": "0" * 16 + "-0123abcd", "fmax_mhz": 99.0}
    figures.update([stale], standard, path)
    assert len(json.loads(path.read_text())) == 1  # replaced, not added
    mhz, source = clock_for(cfg, report=no_report, figures=path)
    assert mhz == 99.0 and "the hardware source has changed since" in source
    assert figures.lookup(CoreConfig(rows=4, cols=4), path=path) is None
    # a local report of other hardware gives way to the committed table; of this, not
    local = tmp_path / "report.json"
    local.write_text(json.dumps([{**entry, "hw_hash": "f" * 16 + "-0", "fmax_mhz": 12.0}]))
    assert clock_for(cfg, report=local, figures=path)[0] == 99.0
    local.write_text(json.dumps([{**entry, "fmax_mhz": 12.0}]))
    assert clock_for(cfg, report=local, figures=path)[0] == 12.0


# -- --model takes a quantized model too ------------------------------------------------


def _run(capsys, *args):
    code = main(["--backend", "model", "--limit", "64", *args])
    return code, capsys.readouterr().err


def test_quantized_model_is_used_directly(tmp_path, capsys):
    out = tmp_path / "r.json"
    code, err = _run(capsys, "--model", "models/mlp.qnpz", "--json", str(out))
    assert code == 0, err
    r = json.loads(out.read_text())
    assert r["model"] == "models/mlp.qnpz" and r["mismatches"] == 0
    assert r["argmax_agreement"] == 1.0


def test_quantized_model_is_recognized_by_content(tmp_path, capsys):
    shutil.copy("models/mlp.qnpz", tmp_path / "model.bin")
    shutil.copy("models/mlp.pt", tmp_path / "mlp.pt")
    code, err = _run(capsys, "--model", str(tmp_path / "model.bin"))
    assert code == 0, err


def _one_error(capsys, *args):
    code, err = _run(capsys, *args)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    return err[len("error: ") :].rstrip("\n")


def test_quantized_model_without_its_checkpoint(tmp_path, capsys):
    shutil.copy("models/mlp.qnpz", tmp_path / "m.qnpz")
    err = _one_error(capsys, "--model", str(tmp_path / "m.qnpz"))
    assert err == f"{tmp_path}/m.qnpz: its float checkpoint {tmp_path}/mlp.pt does not exist"


def test_quantized_model_with_a_changed_checkpoint(tmp_path, capsys):
    shutil.copy("models/mlp.qnpz", tmp_path / "m.qnpz")
    model, meta = load_checkpoint("models/mlp.pt")
    with torch.no_grad():
        model.net[0].bias[0] += 0.5
    save_checkpoint(model, meta, str(tmp_path / "mlp.pt"))  # valid, but other weights
    err = _one_error(capsys, "--model", str(tmp_path / "m.qnpz"))
    assert err.startswith(
        f"{tmp_path}/mlp.pt: sha256 does not match the one recorded in {tmp_path}/m.qnpz"
    )


def test_quantized_model_that_does_not_come_from_its_checkpoint(tmp_path, capsys):
    q = QuantizedModel.load("models/mlp.qnpz")
    layer = q.layers[1]
    bias = layer.bias.copy()
    bias[0] += 2  # one is within the float kernels' rounding (test_quantize.py)
    QuantizedModel((q.layers[0], dataclasses.replace(layer, bias=bias)), q.meta).save(
        str(tmp_path / "m.qnpz")
    )
    shutil.copy("models/mlp.pt", tmp_path / "mlp.pt")
    err = _one_error(capsys, "--model", str(tmp_path / "m.qnpz"))
    assert err.startswith(
        f"{tmp_path}/m.qnpz: the quantized model does not come from "
        f"{tmp_path}/mlp.pt with this quantizer"
    )


def test_altered_quantized_model(tmp_path, capsys):
    with np.load("models/mlp.qnpz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["l1_weight"][0, 0] ^= 1
    with open(tmp_path / "m.qnpz", "wb") as f:
        np.savez(f, **arrays)
    shutil.copy("models/mlp.pt", tmp_path / "mlp.pt")
    err = _one_error(capsys, "--model", str(tmp_path / "m.qnpz"))
    assert (
        err == f"{tmp_path}/m.qnpz: content does not match its recorded hash (the file was "
        f"altered or damaged)"
    )


def test_checkpoint_with_the_wrong_input_width(tmp_path, capsys):
    save_checkpoint(Mlp((100, 16, 10)), {"sizes": [100, 16, 10]}, str(tmp_path / "m.pt"))
    err = _one_error(capsys, "--model", str(tmp_path / "m.pt"))
    assert (
        err == f"{tmp_path}/m.pt: the network takes 100 inputs, expected 784 (28x28 MNIST images)"
    )


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such quantized model"), (b"PK\x03\x04garbage", "not a readable quantized model")],
)
def test_missing_or_damaged_quantized_model(tmp_path, capsys, content, message):
    path = tmp_path / "m.qnpz"
    if content is not None:
        path.write_bytes(content)
    assert _one_error(capsys, "--model", str(path)).startswith(f"{path}: {message}")


def test_checkpoint_named_like_a_quantized_model(tmp_path, capsys):
    shutil.copy("models/mlp.pt", tmp_path / "weights.qnpz")
    code, err = _run(capsys, "--model", str(tmp_path / "weights.qnpz"))
    assert code == 0, err
