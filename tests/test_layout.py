"""The package layout: imports flow one way, with the data.

``hw`` imports nothing of ours but itself; ``host`` takes only ``hw.config`` and
``hw.isa`` from the hardware (and ``hw.util``, helpers that are not hardware, such as
the one atomic file writer; ``hw.synth.figures``, the committed synthesis results;
``hw.board.protocol``, the encoding of the board's serial link;
``hw.cli``, the command-line conventions, in ``host.cli``),
and ``sim`` only in the rtl/gate backends; inside ``host``
every module imports only from its own layer or the layers before it.
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

#: host's layers, in data-flow order: a module may import from its layer or earlier ones.
HOST_LAYERS = [
    ("host.files", "host.golden"),
    ("host.nn",),
    ("host.compile",),
    ("host.backends",),
    ("host.metrics", "host.parallel", "host.run"),
    (
        "host.matmul",
        "host.bench",
        "host.bench_platforms",
        "host.report",
        "host.report_bench",
        "host.report_plots",
    ),
    ("host.api", "host.cli", "host.__main__"),
]
#: the only modules that may import the simulation flow
SIM_USERS = ("host.backends.rtl", "host.backends.registry")


def _modules(package):
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), path, rel.name == "__init__"


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


def _ours(name):
    return name.split(".")[0] in ("hw", "host", "sim")


@pytest.mark.parametrize(
    "name, path, is_package", list(_modules("host")), ids=lambda v: v if isinstance(v, str) else ""
)
def test_host_imports_flow_one_way(name, path, is_package):
    mine = _layer(name)
    assert mine is not None or name == "host", f"{name} is in no layer of HOST_LAYERS"
    for imported in _imports(name, path, is_package):
        top = imported.split(".")[0]
        if top == "hw":
            allowed = (
                "hw.config",
                "hw.isa",
                "hw.util",
                "hw.synth.figures",  # the committed synthesis results: data, not hardware
                "hw.board.protocol",  # the board link's encoding, shared with the host
                *(("hw.cli",) if name.startswith("host.cli") else ()),
            )
            assert imported == "hw" or any(
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
        assert not _ours(imported) or imported.split(".")[0] == "hw", f"{name} imports {imported}"


def test_a_wrong_import_is_caught(tmp_path):
    """The check itself: a compile module importing the CLI is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from ..cli import main\nfrom sim import runner\n")
    found = list(_imports("host.compile.bad", bad, False))
    assert "host.cli.main" in found and "sim.runner" in found
    assert _layer("host.cli.main") > _layer("host.compile.bad")
