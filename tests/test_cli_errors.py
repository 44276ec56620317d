"""Every bad option or output path of the command-line tools: one ``error:`` line on
stderr, exit status 2, and nothing written, found before any work is done."""

import os

import numpy as np
import pytest
import torch

from systolic.host import run
from systolic.host.backends import get_backend
from systolic.host.cli import bench, infer, quantize
from systolic.host.compile import compile_model
from systolic.host.nn.checkpoint import Mlp, save_checkpoint
from systolic.host.nn.qmodel import random_quantized_model
from systolic.hw.config import CoreConfig

#: a model path that would fail later: the option errors must come first
MISSING_MODEL = "no/such/model.pt"


def _error(capsys, main, args):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    return err[len("error: ") : -1]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--shard", "0"], "--shard must be positive, not 0"),
        (["--shard", "-64"], "--shard must be positive, not -64"),
        (["--workers", "0"], "--workers must be positive, not 0"),
        (["--batch", "0"], "--batch must be positive, not 0"),
        (["--batch", "-8"], "--batch must be positive, not -8"),
        (["--limit", "-1"], "--limit must be positive, not -1"),
        (["--clock-mhz", "0"], "--clock-mhz must be a positive finite number of MHz, not 0.0"),
        (
            ["--clock-mhz", "-100"],
            "--clock-mhz must be a positive finite number of MHz, not -100.0",
        ),
        (["--clock-mhz", "nan"], "--clock-mhz must be a positive finite number of MHz, not nan"),
        (["--clock-mhz", "inf"], "--clock-mhz must be a positive finite number of MHz, not inf"),
    ],
)
def test_infer_options(tmp_path, capsys, args, message):
    out = tmp_path / "r.json"
    err = _error(
        capsys,
        infer.main,
        ["--backend", "model", "--model", MISSING_MODEL, "--json", str(out), *args],
    )
    assert err == message
    assert not list(tmp_path.iterdir())


def _json_cases(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    return [
        (tmp_path / "dir", f"{tmp_path}/dir: is a directory"),
        (
            tmp_path / "file" / "r.json",
            f"{tmp_path}/file/r.json: cannot create a directory under {tmp_path}/file, "
            f"which is not a directory",
        ),
    ]


@pytest.mark.parametrize("case", [0, 1])
def test_infer_json_is_checked_before_the_run(tmp_path, capsys, case):
    path, message = _json_cases(tmp_path)[case]
    err = _error(
        capsys, infer.main, ["--backend", "model", "--model", MISSING_MODEL, "--json", str(path)]
    )
    assert err == f"--json {message}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in a read-only directory")
def test_infer_json_in_a_read_only_directory(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    err = _error(
        capsys,
        infer.main,
        ["--backend", "model", "--model", MISSING_MODEL, "--json", str(ro / "r.json")],
    )
    assert err.startswith(f"--json {ro}/r.json: cannot write in {ro}")


@pytest.mark.parametrize("option", ["--json", "--out"])
@pytest.mark.parametrize("case", [0, 1])
def test_quantize_outputs_are_checked_before_the_run(tmp_path, capsys, option, case):
    path, message = _json_cases(tmp_path)[case]
    other = "--out" if option == "--json" else "--json"
    err = _error(
        capsys,
        quantize.main,
        ["--model", MISSING_MODEL, option, str(path), other, str(tmp_path / "other")],
    )
    assert err == f"{option} {message}"
    assert not (tmp_path / "other").exists()


def test_quantize_does_not_overwrite_its_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"checkpoint")
    err = _error(capsys, quantize.main, ["--model", str(ckpt), "--out", str(ckpt)])
    assert err == f"--out {ckpt} would overwrite the checkpoint it quantizes"
    assert ckpt.read_bytes() == b"checkpoint"


def test_quantize_refuses_nan_weights(tmp_path, capsys):
    model = Mlp((784, 16, 10))
    with torch.no_grad():
        model.net[2].weight[1, 1] = float("inf")
    save_checkpoint(model, {"sizes": [784, 16, 10]}, str(tmp_path / "inf.pt"))
    err = _error(
        capsys,
        quantize.main,
        [
            "--model",
            str(tmp_path / "inf.pt"),
            "--out",
            str(tmp_path / "q.qnpz"),
            "--json",
            str(tmp_path / "r.json"),
        ],
    )
    assert (
        err == f"{tmp_path}/inf.pt: layer Linear at net.2 (aten.linear, graph node 2) has "
        f"non-finite weights (NaN or inf)"
    )
    assert sorted(os.listdir(tmp_path)) == ["inf.pt"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--workers", "0"], "--workers must be positive, not 0"),
        (["--clock-mhz", "-77"], "--clock-mhz must be a positive finite number of MHz, not -77.0"),
        (["--clock-mhz", "nan"], "--clock-mhz must be a positive finite number of MHz, not nan"),
        (["--scheduler", "tcp://:1"], "--scheduler must look like tcp://HOST:PORT, not 'tcp://:1'"),
    ],
)
def test_bench_options(tmp_path, capsys, args, message):
    err = _error(capsys, bench.main, ["--sweep", "quick", "--out", str(tmp_path / "b"), *args])
    assert err == message
    assert not list(tmp_path.iterdir())


def test_bench_output_directory_is_checked_before_the_run(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    err = _error(capsys, bench.main, ["--sweep", "quick", "--out", str(tmp_path / "file")])
    assert err == f"--out {tmp_path}/file: is not a directory"


def test_clock_for_refuses_a_bad_override():
    for bad in (0, -1.0, float("nan"), float("inf"), "fast"):
        with pytest.raises(ValueError, match="--clock-mhz must be a"):
            run.clock_for(CoreConfig(), bad)


def test_run_images_refuses_a_bad_shard():
    cfg = CoreConfig(rows=4, cols=4)
    prog = compile_model(random_quantized_model((20, 6, 3)), cfg, 4)
    x = np.zeros((8, 20), np.int8)
    for shard in (0, -4, 2.5):
        with pytest.raises(ValueError, match=f"shard must be a positive integer, not {shard}"):
            run.run_images(get_backend("model", cfg), prog, x, shard=shard, progress=False)


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--waves", "--workers", "2"],
            "--waves keeps one run's waveform: not with --workers or --scheduler",
        ),
        (
            ["--waves", "--scheduler", "tcp://127.0.0.1:8786"],
            "--waves keeps one run's waveform: not with --workers or --scheduler",
        ),
    ],
)
def test_infer_waves_options(tmp_path, capsys, args, message):
    err = _error(capsys, infer.main, ["--backend", "rtl", "--model", MISSING_MODEL, *args])
    assert err == message


@pytest.mark.parametrize(
    "args, message",
    [
        (["--backend", "board"], "--backend board needs --port (the board's serial device)"),
        (
            ["--backend", "rtl", "--port", "/dev/null"],
            "--port and --baud are the board backend's (--backend board)",
        ),  # fmt: skip
        (
            ["--backend", "model", "--baud", "9600"],
            "--port and --baud are the board backend's (--backend board)",
        ),  # fmt: skip
        (
            ["--backend", "board", "--port", "/dev/null", "--workers", "2"],
            "--backend board runs on one board: not with --workers or --scheduler",
        ),
    ],
)
def test_infer_board_options(capsys, args, message):
    err = _error(capsys, infer.main, ["--model", MISSING_MODEL, *args])
    assert err == message


def test_group_usage_errors_are_one_line(capsys):
    from systolic.host.cli import main

    assert _error(capsys, main, ["nope"]) == "No such command 'nope'. (see systolic --help)"
    assert main(["--help"]) == 0 and "bench-core" in capsys.readouterr().out


def test_compile_options(tmp_path, capsys):
    from systolic.host.cli import compile as compile_cli

    assert _error(capsys, compile_cli.main, ["--batch", "0"]) == "--batch must be positive, not 0"
    err = _error(capsys, compile_cli.main, ["--model", MISSING_MODEL, "--size", "40x8"])
    assert err == "rows must be between 2 and 16, not 40"
    assert not list(tmp_path.iterdir())
