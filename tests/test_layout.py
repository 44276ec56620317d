"""The package layout: one namespaced package, and imports flow one way, with the data.

Every import of our code names the namespace (``systolic.hw``, ``systolic.host``,
``systolic.sim``, the folders hw/, host/ and sim/). ``hw`` imports nothing of ours but
itself; ``host`` takes only ``hw.config`` and ``hw.isa`` from the hardware (and
``hw.util``, helpers that are not hardware, such as the one atomic file writer;
``hw.synth.figures``, the committed synthesis results; ``hw.board.protocol``, the
encoding of the board's serial link; ``hw.cli``, the command-line conventions, in
``host.cli``), and ``sim`` only in the rtl/gate backends; inside ``host`` every module
imports only from its own layer or the layers before it.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: host's layers, in data-flow order: a module may import from its layer or earlier ones.
HOST_LAYERS = [
    ("systolic.host.files", "systolic.host.golden"),
    ("systolic.host.nn",),
    ("systolic.host.compile",),
    ("systolic.host.backends",),
    ("systolic.host.metrics", "systolic.host.parallel", "systolic.host.run"),
    (
        "systolic.host.matmul",
        "systolic.host.bench",
        "systolic.host.bench_platforms",
        "systolic.host.report",
        "systolic.host.report_bench",
        "systolic.host.report_plots",
    ),
    ("systolic.host.api", "systolic.host.cli", "systolic.host.__main__"),
]
#: the only modules that may import the simulation flow
SIM_USERS = ("systolic.host.backends.rtl", "systolic.host.backends.registry")


#: the folders that are the subpackages of ``systolic``
PACKAGES = ("hw", "host", "sim")


def _modules(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(("systolic", *parts)), path, rel.name == "__init__"


def _imports(name, path, is_package):
    """Absolute names of everything ``path`` imports (at any depth in the file)."""
    base = name.split(".") if is_package else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(
                    base[: len(base) - node.level + 1] + ([node.module] if node.module else [])
                )
            else:
                mod = node.module
            yield mod
            yield from (f"{mod}.{a.name}" for a in node.names)


def _layer(module):
    for i, layer in enumerate(HOST_LAYERS):
        if any(module == p or module.startswith(p + ".") for p in layer):
            return i
    return None


def _package(name):
    """``hw``, ``host`` or ``sim`` for a module of ours, else None."""
    parts = name.split(".")
    return parts[1] if parts[0] == "systolic" and len(parts) > 1 else None


@pytest.mark.parametrize(
    "name, path, is_package", list(_modules("host")), ids=lambda v: v if isinstance(v, str) else ""
)
def test_host_imports_flow_one_way(name, path, is_package):
    mine = _layer(name)
    assert mine is not None or name == "systolic.host", f"{name} is in no layer of HOST_LAYERS"
    for imported in _imports(name, path, is_package):
        top = _package(imported)
        if top == "hw":
            allowed = (
                "systolic.hw.config",
                "systolic.hw.isa",
                "systolic.hw.util",
                "systolic.hw.synth.figures",  # the committed synthesis results: data, not hardware
                "systolic.hw.board.protocol",  # the board link's encoding, shared with the host
                *(("systolic.hw.cli",) if name.startswith("systolic.host.cli") else ()),
            )
            assert imported == "systolic.hw" or any(
                imported == a or imported.startswith(a + ".") for a in allowed
            ), f"{name} imports {imported}"
        elif top == "sim":
            assert name in SIM_USERS, f"{name} imports {imported}"
        elif top == "host" and _layer(imported) is not None and mine is not None:
            assert _layer(imported) <= mine, (
                f"{name} (layer {mine}) imports {imported} (layer {_layer(imported)})"
            )


@pytest.mark.parametrize(
    "name, path, is_package", list(_modules("hw")), ids=lambda v: v if isinstance(v, str) else ""
)
def test_hw_imports_only_hw(name, path, is_package):
    for imported in _imports(name, path, is_package):
        assert _package(imported) in (None, "hw"), f"{name} imports {imported}"


@pytest.mark.parametrize("folder", [*PACKAGES, "tests"])
def test_imports_name_the_namespace(folder):
    """No import of ``hw``, ``host`` or ``sim`` without ``systolic.``: in an installed
    wheel there is no top-level package of those names."""
    for name, path, is_package in _modules(folder):
        for imported in _imports(name, path, is_package):
            assert imported.split(".")[0] not in PACKAGES, f"{path.name} imports {imported}"


def test_a_wrong_import_is_caught(tmp_path):
    """The check itself: a compile module importing the CLI is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ..cli import main\nfrom systolic.sim import runner\nimport hw.isa\n")
    found = list(_imports("systolic.host.compile.bad", bad, False))
    assert "systolic.host.cli.main" in found and "systolic.sim.runner" in found
    assert "hw.isa" in found  # what test_imports_name_the_namespace refuses
    assert _layer("systolic.host.cli.main") > _layer("systolic.host.compile.bad")
