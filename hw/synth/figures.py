"""The committed table of synthesized figures (``hw/synth/figures.json``).

``make synth`` writes its full results to ``build/synth/`` (git-ignored) and the entries
of the standard configurations (``systolic.hw.synth.cli.DEFAULT_RUNS``) here as well, so that a
fresh clone quotes latency and throughput at the clocks these configurations reached
rather than at an assumed one. Each entry keeps the hash of the hardware source it was
synthesized from (``hw_hash``, :func:`systolic.hw.generate.source_hash` and the tool settings);
:func:`lookup` says when the source has changed since.
"""

import json
import os

from ..config import CoreConfig
from ..generate import source_hash
from ..util.files import atomic_write

__all__ = ["FIGURES", "KEYS", "current", "lookup", "update"]

#: The committed table.
FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "figures.json")

#: What an entry of the table keeps of a synthesis report entry.
KEYS = (
    "family",
    "device",
    "rows",
    "cols",
    "config",
    "pipeline",
    "act_kib",
    "hidden_kib",
    "weight_kib",
    "acc_kib",
    "param_depth",
    "target_mhz",
    "seed",
    "seeds",
    "hw_hash",
    "luts",
    "ffs",
    "dsps",
    "brams",
    "fmax_mhz",
    "critical_path",
)


def current(entry: dict) -> bool:
    """Whether a synthesis entry was made from the hardware source as it is now (an
    entry without a hash, written by hand or by an older flow, counts as current)."""
    return str(entry.get("hw_hash", source_hash())).split("-")[0] == source_hash()


def _key(entry: dict) -> tuple:
    return entry.get("family"), entry.get("rows"), entry.get("cols"), entry.get("pipeline")


def _same_run(a: dict, b: dict) -> bool:
    """Whether two entries are one run's result: the same hardware, tool settings and
    seed (``hw_hash``), and the same figure."""
    return all(a.get(k) == b.get(k) for k in ("hw_hash", "seed", "fmax_mhz"))


def update(
    entries: list[dict], standard: list[tuple[str, CoreConfig]], path: str | None = None
) -> list[dict]:
    """Put the routed entries of the ``standard`` configurations among ``entries`` into
    the table at ``path`` (default :data:`FIGURES`), replacing the same family, size and
    pipeline; returns the table. An entry of one seed that reproduces the table's (the
    same run: ``make synth`` at the chosen seed, from its cache) keeps the table's spread
    of seeds."""
    path = path or FIGURES
    tags = {(fam, cfg.tag) for fam, cfg in standard}
    try:
        with open(path) as f:
            table = json.load(f)
    except (OSError, ValueError):
        table = []
    for entry in entries:
        if (entry.get("family"), entry.get("config")) in tags and entry.get("fmax_mhz"):
            kept = {k: entry.get(k) for k in KEYS}
            old = next((e for e in table if _key(e) == _key(kept)), None)
            if kept["seeds"] is None and old is not None and _same_run(old, kept):
                kept["seeds"] = old.get("seeds")  # a rerun of the table's seed: its spread
            table = [e for e in table if _key(e) != _key(kept)] + [kept]
    table.sort(key=lambda e: (e["family"], e["rows"] * e["cols"], e["pipeline"]))
    with atomic_write(path, "w") as f:
        f.write(json.dumps(table, indent=1) + "\n")
    return table


def lookup(
    cfg: CoreConfig, family: str = "ecp5", path: str | None = None
) -> tuple[dict, bool] | None:
    """The table's entry for ``cfg``'s size and pipeline in the table at ``path`` (default
    :data:`FIGURES`), and whether the hardware source is still the one it was synthesized
    from; None if the table has none."""
    path = path or FIGURES
    try:
        with open(path) as f:
            table = json.load(f)
    except (OSError, ValueError):
        return None
    pipeline = "deep" if cfg.deep_pipeline else "shallow"
    for entry in table:
        if _key(entry) == (family, cfg.rows, cfg.cols, pipeline) and entry.get("fmax_mhz"):
            return entry, current(entry)
    return None
