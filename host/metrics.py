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

from systolic.hw import isa
from systolic.hw.config import CoreConfig

from .backends.model.cycles import walk

__all__ = [
    "utilization",
    "busy_utilization",
    "run_figures",
    "sim_speed",
    "onchip_bytes",
    "cycle_breakdown",
]


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


def cycle_breakdown(program, inputs) -> dict:
    """Where the cycles of a run go, from the exact cycle model (no gaps, no backpressure).

    Every cycle of the program is counted once: ``start`` (the preamble and the first
    batch's inputs, before the first row issues), then, for each layer, its MATMUL rows,
    its POSTPROC rows and ``wait`` (cycles between one instruction's last row and the
    next one's last row that issue no row of it: the drain when the engine switches
    between MATMUL and POSTPROC, or waiting for the front end), ``padding`` (POSTPROCs
    that write the zero-point borders of a CNN's maps) and ``end`` (the last drain and
    END). A MATMUL belongs to the layer of the POSTPROC that follows it; a POSTPROC to
    the layer whose parameter words it reads (``header["sizes"]``).

    Returns ``{"cycles", "images", "resident_beats", "start", "end", "layers": [...],
    "padding": {...}}``; ``resident_beats`` are the beats of the weight and parameter
    LOADs before the first MATMUL (one a cycle: the front end takes them while the engine
    has nothing to do, and nothing the engine does comes before them), so that for one
    image ``cycles - resident_beats`` is its latency with the weights already on chip:
    from its first input beat to the END that follows its last result.
    with each layer's ``matmul_rows``, ``postproc_rows``, ``wait``, ``cycles``, and, where
    the header gives ``layer_macs``, its ``macs`` and ``utilization`` (MACs / (rows x cols
    x its cycles)).
    """
    cfg, h = program.config, program.header
    bounds = [0]
    for n in h["sizes"][1:]:
        bounds.append(bounds[-1] + -(-n // cfg.cols))
    ops = []
    resident = [0]  # beats of the LOADs of weights and parameters before the first row

    def record(op, f, pos):
        if op is isa.Opcode.LOAD and isa.Target(f["target"]) is not isa.Target.ACT and not ops:
            resident[0] += 1 + f["count"]
        if op in (isa.Opcode.MATMUL, isa.Opcode.POSTPROC):
            slots = f["m"] * (cfg.raw_beats if op is isa.Opcode.POSTPROC and f["raw"] else 1)
            ops.append([op, slots, f.get("param_addr")])

    tl, err = walk(cfg, program.beats(inputs), record)
    if err is not isa.ErrorCode.NONE:
        raise ValueError(f"the program stops with {err.name}; no breakdown")
    label = "end"
    for op_ in reversed(ops):  # a POSTPROC's layer; a MATMUL takes the next POSTPROC's
        if op_[0] is isa.Opcode.POSTPROC:
            p = op_[2]
            label = next((i for i in range(len(bounds) - 1) if p < bounds[i + 1]), "padding")
        op_[2] = label
    n_layers = len(bounds) - 1
    layers = [
        {"layer": i, "matmul_rows": 0, "postproc_rows": 0, "wait": 0} for i in range(n_layers)
    ]
    padding = {"postproc_rows": 0, "wait": 0}
    prev = tl.pops[0] if ops else 0
    for (op, slots, where), pop in zip(ops, tl.pops, strict=True):
        end = pop + slots
        entry = padding if where == "padding" else layers[where]
        key = "matmul_rows" if op is isa.Opcode.MATMUL else "postproc_rows"
        entry[key] += slots
        entry["wait"] += end - prev - slots
        prev = end
    macs = h.get("layer_macs")
    for i, e in enumerate(layers):
        e["cycles"] = e["matmul_rows"] + e["postproc_rows"] + e["wait"]
        if macs is not None:
            e["macs"] = macs[i] * len(inputs)
            e["utilization"] = e["macs"] / (cfg.macs_per_cycle * e["cycles"]) if e["cycles"] else 0
    padding["cycles"] = padding["postproc_rows"] + padding["wait"]
    total = tl.final + 1
    return {
        "cycles": total,
        "images": len(inputs),
        "resident_beats": resident[0],
        "start": tl.pops[0] if ops else total,
        "end": total - prev if ops else 0,
        "layers": layers,
        "padding": padding,
    }
