"""The figures of a run, defined once; every report (infer, bench, bench-core) uses these.

``utilization``
    useful MACs / (rows x cols x ``cycles``): the share of the array's capacity used
    over the whole program, from its first beat to END (loads and drains included).
``busy_utilization``
    useful MACs / (rows x cols x ``busy_cycles``): the same over the cycles the engine
    was busy only; always at least ``utilization``. The two are never interchangeable.
``cycles_per_image``, ``images_per_second_at_clock``, ``latency_us_at_clock``
    cycles / images; images x clock / cycles; cycles per image / clock (the latency of
    one image at batch 1).
``sim_cycles_per_second``
    simulated core cycles per second of simulator time (None when nothing was simulated).

Useful MACs are the multiply-accumulates the network needs (``K x N`` a row of a layer),
not the padded tiles the array runs.
"""

from hw import isa
from hw.config import CoreConfig

__all__ = ["utilization", "busy_utilization", "run_figures", "sim_speed", "onchip_bytes"]


def utilization(useful_macs: int, cfg: CoreConfig, cycles: int) -> float:
    """useful MACs / (rows x cols x cycles)."""
    return useful_macs / (cfg.macs_per_cycle * cycles)


def busy_utilization(useful_macs: int, cfg: CoreConfig, busy_cycles: int) -> float:
    """useful MACs / (rows x cols x busy cycles)."""
    return useful_macs / (cfg.macs_per_cycle * busy_cycles)


def sim_speed(sim_cycles: int, sim_seconds: float) -> float | None:
    """Simulated cycles per second, or None when nothing was simulated."""
    return sim_cycles / sim_seconds if sim_seconds else None


def run_figures(
    cfg: CoreConfig, useful_macs: int, status: dict, images: int, clock_mhz: float | None = None
) -> dict:
    """The counters of a status packet (summed over shards) and the figures from them.

    Parameters
    ----------
    cfg : CoreConfig
    useful_macs : int
        The network's multiply-accumulates for these ``images``.
    status : dict
        ``cycles``, ``busy_cycles`` and ``mac_cycles`` of the status packet.
    images : int
        Images (rows of the first matmul) the run processed.
    clock_mhz : float, optional
        Adds the figures at this clock.
    """
    cycles = status["cycles"]
    out = {
        "cycles": cycles,
        "busy_cycles": status["busy_cycles"],
        "mac_cycles": status["mac_cycles"],
        "useful_macs": useful_macs,
        "utilization": utilization(useful_macs, cfg, cycles),
        "busy_utilization": busy_utilization(useful_macs, cfg, status["busy_cycles"]),
        "cycles_per_image": cycles / images,
    }
    if clock_mhz is not None:
        out["clock_mhz"] = clock_mhz
        out["images_per_second_at_clock"] = images * clock_mhz * 1e6 / cycles
        out["latency_us_at_clock"] = cycles / images / clock_mhz
    return out


def onchip_bytes(program) -> dict:
    """Bytes of on-chip buffer a compiled network uses: weight tiles (resident, or the
    ring they stream through), activations (the input's two regions and the hidden
    layers), accumulators and parameters (bias and scale word per output channel)."""
    cfg, h = program.config, program.header
    R, C, B = cfg.rows, cfg.cols, program.batch
    weights = min(h["weight_tiles"], cfg.weight_depth) * R * C * cfg.weight_bits // 8
    tiles = [-(-n // C) for n in h["sizes"][1:]]
    word = R * cfg.act_bits // 8
    param_words = sum(tiles)
    if program.image is not None:  # a CNN: its plan says what it uses
        fp = program.image["footprint"]
        act = (fp["input"] + fp["hidden"]) * word
        acc = fp["accumulators"] * C * cfg.acc_bits // 8
        param_words += program.image["fill_params"]
    else:
        act = (2 * h["in_tiles"] + sum(t * cfg.groups for t in tiles[:-1])) * B * word
        acc = max(tiles) * B * C * cfg.acc_bits // 8
    params = param_words * C * (isa.BIAS_BITS + isa.SCALE_WORD.size) // 8
    return {
        "weights": weights,
        "activations": act,
        "accumulators": acc,
        "params": params,
        "total": weights + act + acc + params,
    }
