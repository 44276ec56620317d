"""The built wheel is a working tool outside the checkout: installed into a fresh virtual
environment, its console script run from another directory builds the simulator under
that directory's build/ (the harness and the shipped models come from the package) and
an RTL inference passes; nothing is written inside the installed package.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: What the wheel is built from (copied, so that the build leaves the checkout alone).
SOURCES = ("pyproject.toml", "README.md", "host", "hw", "sim", "models")


def _files(folder):
    return {
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


@pytest.mark.rtl
def test_wheel_runs_an_rtl_inference_from_another_directory(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), src],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("systolic_mnist-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for data in (
        "systolic/sim/hdl/tb_top.sv",
        "systolic/sim/hdl/ceiling_main.cpp",
        "systolic/host/nn/_models/mlp.pt",
    ):
        assert data in names, data
    assert {"systolic/host/nn/_models/mlp.qnpz", "systolic/host/nn/_models/cnn.pt"} <= set(names)
    # one namespaced package: nothing else at the top level but the metadata
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"systolic"}
    # a fresh virtual environment with the wheel (and its console script) installed;
    # the pinned dependencies come from this one's site-packages, named in a .pth file
    # (a path only: this environment's own .pth files, the editable install of the
    # checkout among them, are not read there)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = pathlib.Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    installed = _files(site)
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("WAVES", "PYTHONPATH")}
    where = subprocess.run(
        [
            python,
            "-c",
            "import systolic.host as h, systolic.hw as w, systolic.sim as s; "
            "print(h.__file__, w.__file__, s.__file__)",
        ],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert all(pathlib.Path(p).is_relative_to(site) for p in where), where
    res = subprocess.run(
        [venv / "bin" / "systolic", "infer", "--backend", "rtl"]
        + ["--size", "2x2", "--limit", "8", "--batch", "8"],
        cwd=run_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert res.stdout.splitlines()[-1].startswith("PASS: rtl 2x2, 8 images, 0 mismatches"), (
        res.stdout
    )
    assert "building the Verilator model for r2c2-" in res.stderr
    assert (run_dir / "build").is_dir()
    assert _files(site) == installed  # nothing written inside the installed package
