"""The compiled program: the contract between the host and every backend.

A :class:`Program` holds the resident preamble (weights, biases, requantization
parameters: LOAD beats), one batch's schedule, and the layout of inputs and
outputs. :meth:`Program.beats` assembles the complete beat stream for a set of
images: the preamble, the first batch's images, then every batch's schedule, each
carrying the next batch's images in LOAD chunks between its MATMULs, then END. A
schedule may instead carry the first batch's images itself, in chunks just before the
MATMULs that first read them, so that the first batch's loading overlaps its work.

File format (``.prog``): the magic ``SYSTPROG``, a little-endian uint16 format
version, a uint32 header length, the JSON header (configuration, shapes, layout),
an ``.npz`` archive with the preamble beats and the schedule arrays, and last the
SHA-256 digest (32 bytes) of everything before it. The reader checks the digest
before it parses anything, then :meth:`Program._validate` cross-checks every header
field, array and instruction against the configuration, so a file altered behind a
recomputed digest is refused too unless it is still a consistent program.
"""

import functools
import hashlib
import io
import json
import struct

import numpy as np

from systolic.hw import isa
from systolic.hw.config import MAX_ROWS_PER_OP, CoreConfig
from systolic.hw.isa import ErrorCode, LoopTarget, Opcode, Target

from ..files import atomic_write
from .checks import check_instruction

__all__ = [
    "Program",
    "ProgramError",
    "MAGIC",
    "VERSION",
    "DIGEST_BYTES",
    "HEADER_FIELDS",
    "SCHEDULE_ARRAYS",
    "ITEM_WORD",
    "ITEM_NEXT_INPUT",
    "ITEM_BLOCK",
    "ITEM_FIRST_INPUT",
    "word_beats",
    "beat_words",
    "status_packet",
]

MAGIC = b"SYSTPROG"
VERSION = 2
#: Schedule item kinds: an instruction word; a chunk of the next batch's input words
#: (loaded into the other input region); a block of constant beats (a streamed weight
#: tile); a chunk of the current batch's input words, loaded into input region 0 by the
#: first batch of a run only (every later batch's inputs came with the previous batch's
#: next-input chunks).
ITEM_WORD, ITEM_NEXT_INPUT, ITEM_BLOCK, ITEM_FIRST_INPUT = 0, 1, 2, 3


class ProgramError(ValueError):
    """A program that is malformed, truncated, or for another configuration."""


_WORD = f"<u{isa.INSTR_BYTES}"  # an instruction (or LOAD data) word in a beat
_STATUS = f"<u{isa.STATUS_WORD_BYTES}"  # a status-packet word in a beat


def word_beats(words: np.ndarray, stream_bytes: int) -> np.ndarray:
    """64-bit words -> beats (uint8 ``[n, stream_bytes]``), a word in each beat's low bytes."""
    words = np.asarray(words, np.uint64)
    out = np.zeros((len(words), stream_bytes), np.uint8)
    out[:, : isa.INSTR_BYTES] = words.astype(_WORD).view(np.uint8).reshape(-1, isa.INSTR_BYTES)
    return out


def beat_words(beats: np.ndarray) -> np.ndarray:
    """Beats -> the 64-bit word in each one's low bytes (uint64 ``[n]``)."""
    return np.ascontiguousarray(np.asarray(beats, np.uint8)[:, : isa.INSTR_BYTES]).view(_WORD)[:, 0]


def status_packet(beats: np.ndarray) -> dict:
    """The status packet at the end of the result beats: ``{field: value}`` in
    :data:`systolic.hw.isa.STATUS_FIELDS` order, one word in the low bytes of each beat."""
    ns = len(isa.STATUS_FIELDS)
    tail = np.ascontiguousarray(
        np.asarray(beats, np.uint8)[len(beats) - ns :, : isa.STATUS_WORD_BYTES]
    )
    return dict(zip(isa.STATUS_FIELDS, map(int, tail.view(_STATUS)[:, 0]), strict=True))


#: Header fields, all required (the configuration travels beside them in the file).
HEADER_FIELDS = (
    "batch",
    "in_features",
    "out_features",
    "in_tiles",
    "input_regions",
    "out_tiles",
    "raw",
    "useful_macs_per_row",
    "sizes",
    "weights_resident",
    "weight_tiles",
)
#: Optional header fields: ``image`` (a convolutional network's input: ``shape``
#: ``[C, H, W]``, ``pad``, ``zero_point`` of the padding, ``patch`` ``[kernel, stride]``
#: of the first layer's windows laid out by the host (``[1, 1]``: none),
#: ``fill_params``, the parameter words after the layers' that write padding, and
#: ``footprint``, the input, hidden and accumulator words used) lays each image out as a
#: padded NHWC map (or its patches), ``in_tiles`` words an image, image ``b`` at
#: ``b * in_tiles``, and every image of a batch is computed (MATMUL and POSTPROC row
#: counts are not the batch). ``layer_macs``: each layer's share of
#: ``useful_macs_per_row``.
OPTIONAL_FIELDS = ("image", "layer_macs")
SCHEDULE_ARRAYS = ("kind", "even", "odd", "start", "count", "block")
DIGEST_BYTES = 32  #: SHA-256, at the end of the file
_SCHEDULE_OPS = (Opcode.MATMUL, Opcode.POSTPROC, Opcode.SYNC, Opcode.LOOP)


@functools.cache
def _field_bits(op):
    """The bits of ``op``'s instruction word that belong to one of its fields."""
    return sum(((1 << field.width) - 1) << field.offset for _, field in isa.LAYOUTS[op])


def _short(value, text=None):
    """``repr(value)`` (or ``text``), cut short: a corrupt header may hold anything."""
    text = repr(value) if text is None else text
    return text if len(text) <= 60 else text[:57] + "..."


def _is_json_int(value):
    """A JSON integer: a Python int, not a bool (nor a float that happens to be whole)."""
    return isinstance(value, int) and not isinstance(value, bool)


class Program:
    """A compiled network (or single matmul) for one :class:`CoreConfig`.

    Parameters
    ----------
    config : CoreConfig
    header : dict
        ``batch`` (rows a batch, the ``m`` of every MATMUL and POSTPROC),
        ``in_features``, ``out_features``, ``in_tiles`` (activation words a row of
        input takes), ``input_regions`` (two base addresses of the ping-pong input
        regions), ``out_tiles``, ``raw`` (int32 outputs), ``useful_macs_per_row``,
        ``sizes`` (features of every layer boundary), ``weights_resident`` and
        ``weight_tiles``. Python ints and bools, as in JSON.
    preamble : uint8 [n, stream_bytes]
        Resident loads (weights, bias, scale), streamed once.
    schedule : dict of 1-D integer arrays
        ``kind`` (ITEM_*), ``even``/``odd`` (uint64 instruction words for batches using
        input region 0/1), ``start``/``count`` (next-input and first-input chunks, in
        input words of a batch), ``block`` (index into ``blocks``, constant beats such
        as streamed weights). Without first-input chunks the first batch's inputs are
        loaded whole before its schedule.
    blocks : list of uint8 [n, stream_bytes]

    Raises
    ------
    ProgramError
        When a field, array or instruction is inconsistent with the others or with
        ``config`` (see :meth:`_validate`).
    """

    def __init__(self, config, header, preamble, schedule, blocks=()):
        if not isinstance(config, CoreConfig):
            raise ProgramError(f"config must be a CoreConfig, not {type(config).__name__}")
        if not isinstance(header, dict):
            raise ProgramError(f"header must be a dict, not {type(header).__name__}")
        self.config = config
        self.header = dict(header)
        self.preamble = self._beat_array("preamble", preamble)
        self.schedule = self._schedule_arrays(schedule)
        self.blocks = [self._beat_array(f"block {i}", b) for i, b in enumerate(blocks)]
        self._validate()

    # -- properties -----------------------------------------------------------------
    @property
    def batch(self):
        return self.header["batch"]

    @property
    def in_features(self):
        return self.header["in_features"]

    @property
    def out_features(self):
        return self.header["out_features"]

    def useful_macs(self, n_images: int) -> int:
        return self.header["useful_macs_per_row"] * n_images

    def check_config(self, config: CoreConfig) -> None:
        if config != self.config:
            raise ProgramError(
                f"program was compiled for {self.config.tag} "
                f"({self.config.rows}x{self.config.cols}), not for {config.tag} "
                f"({config.rows}x{config.cols})"
            )

    # -- validation -----------------------------------------------------------------
    def _beat_array(self, name, beats):
        beats = np.asarray(beats)
        sb = self.config.stream_bytes
        if beats.dtype != np.uint8 or beats.ndim != 2 or beats.shape[1] != sb:
            raise ProgramError(
                f"{name} must be uint8 [n, {sb}] beats, not {beats.dtype} {list(beats.shape)}"
            )
        return beats

    @staticmethod
    def _schedule_arrays(schedule):
        if not isinstance(schedule, dict) or set(schedule) != set(SCHEDULE_ARRAYS):
            found = sorted(map(str, schedule)) if isinstance(schedule, dict) else schedule
            raise ProgramError(
                f"schedule has arrays {found}, expected {', '.join(SCHEDULE_ARRAYS)}"
            )
        out = {}
        for name in SCHEDULE_ARRAYS:
            a = np.asarray(schedule[name])
            want = "uint64" if name in ("even", "odd") else "integer"
            if (
                a.ndim != 1
                or a.dtype.kind not in "iu"
                or (want == "uint64" and a.dtype != np.uint64)
            ):
                raise ProgramError(
                    f"schedule array {name} must be a 1-D {want} array, not "
                    f"{a.dtype} {list(a.shape)}"
                )
            if len(a) != len(schedule["kind"]):
                raise ProgramError(
                    f"schedule array {name} has {len(a)} items, expected "
                    f"{len(schedule['kind'])} (as kind)"
                )
            out[name] = a
        return out

    def _validate(self):
        """Cross-check the header, the beats and the schedule against the configuration.

        Every instruction word must decode with no stray bits, be one the core accepts
        (:func:`systolic.host.compile.checks.check_instruction`) and fit the batch and the input
        regions;
        the next-input chunks must load the next batch's input words once, in order, and
        so must the first-input chunks, if any, each before the first MATMUL that reads
        its words. A program that passes runs on the core without an error code.
        """
        self._validate_header()
        h, R, C = self.header, self.config.rows, self.config.cols
        loads = {}  # LOAD headers decoded so far: streamed weight blocks repeat them
        pre = self._check_stream(
            "preamble", self.preamble, (Target.WEIGHT, Target.BIAS, Target.SCALE), loads
        )
        params = sum(-(-n // C) for n in h["sizes"][1:]) * C
        if self.image is not None:
            params += self.image["fill_params"] * C
        tiles, resident = h["weight_tiles"], h["weights_resident"]
        for target, want, why in (
            (Target.BIAS, params, f"{C}-channel parameter words for sizes {h['sizes']}"),
            (Target.SCALE, params, f"{C}-channel parameter words for sizes {h['sizes']}"),
            (
                Target.WEIGHT,
                tiles * R if resident else 0,
                f"weight_tiles {tiles} x rows {R}" if resident else "weights are streamed",
            ),
        ):
            if pre[target] != want:
                raise ProgramError(
                    f"preamble loads {pre[target]} {target.name} beats, expected {want} ({why})"
                )
        for i, block in enumerate(self.blocks):
            rows = self._check_stream(f"block {i}", block, (Target.WEIGHT,), loads)[Target.WEIGHT]
            if rows != R:
                raise ProgramError(f"block {i} loads {rows} WEIGHT beats, expected {R} (one tile)")
        self._validate_schedule()

    def _validate_header(self):
        h, cfg = self.header, self.config
        missing = [name for name in HEADER_FIELDS if name not in h]
        if missing:
            raise ProgramError(f"header has no field(s) {', '.join(missing)}")
        unknown = sorted(map(str, set(h) - set(HEADER_FIELDS) - set(OPTIONAL_FIELDS)))
        if unknown:
            raise ProgramError(f"unknown header field(s): {_short(None, ', '.join(unknown))}")

        def integer(name, lo, hi=None):
            value = h[name]
            if not _is_json_int(value):
                raise ProgramError(f"header field {name} must be an integer, not {_short(value)}")
            if value < lo or (hi is not None and value > hi):
                expected = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
                raise ProgramError(f"header field {name} must be {expected}, not {value}")
            return value

        def boolean(name):
            if not isinstance(h[name], bool):
                raise ProgramError(
                    f"header field {name} must be true or false, not {_short(h[name])}"
                )
            return h[name]

        def derived(name, want, why):
            value = integer(name, 1)
            if value != want:
                raise ProgramError(f"header field {name} is {value}, expected {want} ({why})")

        integer("batch", 1, MAX_ROWS_PER_OP)
        K = integer("in_features", 1)
        N = integer("out_features", 1)
        if self.image is None:
            derived("in_tiles", -(-K // cfg.rows), f"ceil(in_features {K} / rows {cfg.rows})")
        else:
            c, hh, ww = self._validate_image(K)
            p, (k, s) = self.image["pad"], self.image["patch"]
            oh, ow = (hh + 2 * p - k) // s + 1, (ww + 2 * p - k) // s + 1
            if k == 1 and s == 1:
                want, why = (hh + 2 * p) * (ww + 2 * p) * -(-c // cfg.rows), "a padded map"
            else:
                want, why = oh * ow * -(-c * k * k // cfg.rows), f"its {k}x{k} patches"
            derived("in_tiles", want, f"a {c}x{hh}x{ww} image as {why}")
        derived("out_tiles", -(-N // cfg.cols), f"ceil(out_features {N} / cols {cfg.cols})")
        boolean("raw")
        integer("useful_macs_per_row", 0)
        sizes = h["sizes"]
        if (
            not isinstance(sizes, list)
            or len(sizes) < 2
            or not all(_is_json_int(n) and n >= 1 for n in sizes)
        ):
            raise ProgramError(
                f"header field sizes must be a list of at least two positive "
                f"integers, not {_short(sizes)}"
            )
        if sizes[0] != K or sizes[-1] != N:
            raise ProgramError(
                f"header field sizes is {sizes}, expected in_features {K} "
                f"first and out_features {N} last"
            )
        macs = h.get("layer_macs")
        if macs is not None and (
            not isinstance(macs, list)
            or len(macs) != len(sizes) - 1
            or not all(_is_json_int(n) and n >= 0 for n in macs)
            or sum(macs) != h["useful_macs_per_row"]
        ):
            raise ProgramError(
                f"header field layer_macs must list {len(sizes) - 1} MAC counts adding up "
                f"to useful_macs_per_row, not {_short(macs)}"
            )
        resident = boolean("weights_resident")
        tiles = integer("weight_tiles", 1)
        if resident and tiles > cfg.weight_depth:
            raise ProgramError(
                f"header field weight_tiles is {tiles}, expected at most "
                f"{cfg.weight_depth} (the weight buffer) with resident weights"
            )
        want_blocks = 0 if resident else tiles
        if len(self.blocks) != want_blocks:
            raise ProgramError(
                f"{len(self.blocks)} weight blocks, expected {want_blocks} "
                f"(weights_resident {str(resident).lower()}, weight_tiles "
                f"{tiles})"
            )
        regions = h["input_regions"]
        if (
            not isinstance(regions, list)
            or len(regions) != 2
            or not all(map(_is_json_int, regions))
        ):
            raise ProgramError(
                f"header field input_regions must be a list of two integers, not {_short(regions)}"
            )
        words = self._batch_words()
        for base in regions:
            if base < 0 or base + words > cfg.act_depth:
                raise ProgramError(
                    f"header field input_regions has {base}, expected a base address with "
                    f"its {words} input words (in_tiles * batch) inside the input buffer "
                    f"[0, {cfg.act_depth})"
                )
        if abs(regions[0] - regions[1]) < words:
            raise ProgramError(
                f"header field input_regions {regions} overlap, expected "
                f"bases at least {words} words (in_tiles * batch) apart"
            )

    @property
    def image(self):
        """The ``image`` header field (a convolutional network's input), or None."""
        return self.header.get("image")

    def _validate_image(self, K):
        """The ``image`` field: shape, padding, zero point; returns ``(C, H, W)``."""
        img, cfg = self.image, self.config
        keys = {"shape", "pad", "zero_point", "fill_params", "patch", "footprint"}
        if not isinstance(img, dict) or set(img) != keys:
            raise ProgramError(
                f"header field image must be an object with {', '.join(sorted(keys))}, "
                f"not {_short(img)}"
            )
        shape = img["shape"]
        if (
            not isinstance(shape, list)
            or len(shape) != 3
            or not all(_is_json_int(n) and n >= 1 for n in shape)
        ):
            raise ProgramError(f"header field image shape must be [C, H, W], not {_short(shape)}")
        for name, lo, hi in (("pad", 0, 2), ("zero_point", -128, 127), ("fill_params", 0, None)):
            v = img[name]
            if not _is_json_int(v) or v < lo or (hi is not None and v > hi):
                raise ProgramError(f"header field image {name} is out of range: {_short(v)}")
        patch = img["patch"]
        if (
            not isinstance(patch, list)
            or len(patch) != 2
            or not all(_is_json_int(n) and 1 <= n <= 5 for n in patch)
            or (patch[0] == 1 and patch[1] != 1)
        ):
            raise ProgramError(
                f"header field image patch must be [kernel, stride] (1..5; [1, 1]: no "
                f"patches), not {_short(patch)}"
            )
        fp, depths = (
            img["footprint"],
            {
                "input": cfg.act_depth,
                "hidden": cfg.hidden_depth,
                "accumulators": cfg.acc_depth,
            },
        )
        if (
            not isinstance(fp, dict)
            or set(fp) != set(depths)
            or not all(_is_json_int(fp[k]) and 0 <= fp[k] <= depths[k] for k in depths)
        ):
            raise ProgramError(
                f"header field image footprint must give the input, hidden and accumulator "
                f"words used, each within its buffer, not {_short(fp)}"
            )
        c, hh, ww = shape
        if patch[0] > hh + 2 * img["pad"] or patch[0] > ww + 2 * img["pad"]:
            raise ProgramError(f"header field image patch {patch} is larger than the image")
        if c * hh * ww != K:
            raise ProgramError(
                f"header field image shape {shape} has {c * hh * ww} values, expected "
                f"in_features {K}"
            )
        return c, hh, ww

    def _batch_words(self):
        """Activation words one batch of inputs takes (``in_tiles * batch``)."""
        return self.header["in_tiles"] * self.header["batch"]

    def _decode(self, word, where, ops, patterns=None):
        """Decode one instruction word; refuse stray bits, other opcodes, core errors
        (a MATMUL's or POSTPROC's under the LOOP ``patterns`` in force; linear: None)."""
        try:
            op, f = isa.decode(word)
        except isa.InstructionError as exc:
            raise ProgramError(f"{where}: {exc}") from None
        if op not in ops:
            raise ProgramError(f"{where}: {op.name}, expected {' or '.join(o.name for o in ops)}")
        if word & ~_field_bits(op):
            raise ProgramError(
                f"{where}: {op.name} word {word:#018x} has bits set outside its fields"
            )
        err = check_instruction(self.config, op, f, patterns)
        if err is not ErrorCode.NONE:
            raise ProgramError(f"{where}: the core refuses this {op.name} ({err.name}): {f}")
        return op, f

    def _check_stream(self, name, beats, targets, decoded):
        """A LOAD-only beat stream (preamble or block): headers valid, data complete.

        Returns the data beats loaded into each target.
        """
        words = beat_words(beats)
        loaded = dict.fromkeys(Target, 0)
        pos = 0
        while pos < len(words):
            where = f"{name} beat {pos}"
            word = int(words[pos])
            if word not in decoded:
                decoded[word] = self._decode(word, where, (Opcode.LOAD,))
            _, f = decoded[word]
            target = Target(f["target"])
            if target not in targets:
                raise ProgramError(
                    f"{where}: LOAD to {target.name}, expected "
                    f"{' or '.join(t.name for t in targets)}"
                )
            if pos + 1 + f["count"] > len(words):
                raise ProgramError(
                    f"{where}: the LOAD's {f['count']} data beats run past the "
                    f"end of the {name} ({len(words) - pos - 1} left)"
                )
            loaded[target] += f["count"]
            pos += 1 + f["count"]
        return loaded

    def _validate_schedule(self):
        s, h, cfg = self.schedule, self.header, self.config
        B, words = h["batch"], self._batch_words()
        r0, r1 = h["input_regions"]
        kinds = (ITEM_WORD, ITEM_NEXT_INPUT, ITEM_BLOCK, ITEM_FIRST_INPUT)
        bad = np.flatnonzero(~np.isin(s["kind"], kinds))
        if len(bad):
            i = int(bad[0])
            raise ProgramError(
                f"schedule item {i}: kind {s['kind'][i]}, expected "
                f"{ITEM_WORD} (word), {ITEM_NEXT_INPUT} (next input), "
                f"{ITEM_BLOCK} (block) or {ITEM_FIRST_INPUT} (first input)"
            )
        decoded = {}
        patterns = {LoopTarget.READ: None, LoopTarget.WRITE: None}  # linear at the start
        image = self.image is not None
        loaded = 0  # next-input words loaded so far, in order
        # With first-input chunks the first batch's inputs are not preloaded: each MATMUL
        # of input region 0 may read only the words the chunks before it have loaded.
        first = bool(np.any(s["kind"] == ITEM_FIRST_INPUT))
        first_loaded = 0  # first-input words loaded so far, in order
        stream_rows = 0  # POSTPROCs to the result stream
        # A next-input chunk overwrites the region the previous batch read: it must wait
        # until that batch's MATMULs have all issued, which pushing the (queue_depth + 2)th
        # engine instruction of this batch guarantees (or a SYNC, which drains the engine).
        engine, synced, distance = 0, False, cfg.input_reload_distance
        for i, kind in enumerate(s["kind"].tolist()):
            if kind == ITEM_BLOCK:
                block = int(s["block"][i])
                if not 0 <= block < len(self.blocks):
                    raise ProgramError(
                        f"schedule item {i}: block {block}, expected an index "
                        f"below {len(self.blocks)} (the number of blocks)"
                    )
            elif kind == ITEM_NEXT_INPUT:
                if engine < distance and not synced:
                    raise ProgramError(
                        f"schedule item {i}: next-input chunk after {engine} "
                        f"engine instructions, expected at least {distance} "
                        f"(queue_depth + 2) or a SYNC before it"
                    )
                loaded = self._chunk(i, "next-input", loaded, words)
            elif kind == ITEM_FIRST_INPUT:
                first_loaded = self._chunk(i, "first-input", first_loaded, words)
            else:
                even, odd = int(s["even"][i]), int(s["odd"][i])
                for word, parity in ((even, "even"), (odd, "odd")):
                    key = (word, patterns[LoopTarget.READ], patterns[LoopTarget.WRITE])
                    if key not in decoded:
                        decoded[key] = self._decode(
                            word, f"schedule word {i} ({parity})", _SCHEDULE_OPS, patterns
                        )
                    decoded[word] = decoded[key]
                (op, f), (_, f_odd) = decoded[even], decoded[odd]
                where = f"schedule word {i}"
                engine += op in (Opcode.MATMUL, Opcode.POSTPROC)
                synced |= op is Opcode.SYNC
                if op is Opcode.LOOP:
                    target = LoopTarget(f["target"])
                    patterns[target] = (
                        (f["inner"], f["outer"], f["inner_stride"], f["outer_stride"])
                        if f["inner"]
                        else None
                    )
                elif (
                    op is not Opcode.SYNC
                    and f["m"] != B
                    and not image
                    and not (op is Opcode.MATMUL and f["tile_step"] and B == 1)
                ):  # a stepping MATMUL of a batch-1 program: m is its output tiles
                    raise ProgramError(f"{where}: {op.name} m is {f['m']}, expected the batch {B}")
                odd_want = (op, f)
                if op is Opcode.MATMUL and f["act_addr"] < cfg.act_depth:
                    a = f["act_addr"]
                    pattern = patterns[LoopTarget.READ]
                    span = f["m"] - 1
                    if pattern is not None:
                        inner, outer, si, so = pattern
                        span = (inner - 1) * si + (outer - 1) * so
                    if a < r0 or a + span >= r0 + words:
                        raise ProgramError(
                            f"{where}: MATMUL reads input words {a}.."
                            f"{a + span}, expected inside input region 0 "
                            f"[{r0}, {r0 + words})"
                        )
                    if first and a + span - r0 >= first_loaded:
                        have = f"words {r0}..{r0 + first_loaded - 1}" if first_loaded else "none"
                        raise ProgramError(
                            f"{where}: MATMUL reads input words {a}..{a + span} before "
                            f"the first-input chunks have loaded them (loaded so far: {have})"
                        )
                    odd_want = (op, {**f, "act_addr": a - r0 + r1})
                if decoded[odd] != odd_want:
                    raise ProgramError(
                        f"{where}: odd-batch word {decoded[odd][0].name} "
                        f"{f_odd}, expected {op.name} {odd_want[1]} (the even "
                        f"word with input region {r0} moved to {r1})"
                    )
                if op is Opcode.POSTPROC and f["to_stream"]:
                    stream_rows += 1
                    if bool(f["raw"]) != h["raw"]:
                        raise ProgramError(
                            f"{where}: POSTPROC raw is {f['raw']}, expected "
                            f"{int(h['raw'])} (header field raw)"
                        )
        if loaded != words:
            raise ProgramError(
                f"the next-input chunks load {loaded} input words, expected "
                f"{words} (in_tiles * batch)"
            )
        for target, pattern in patterns.items():
            if pattern is not None:  # the schedule repeats batch after batch
                raise ProgramError(
                    f"the schedule ends with the {target.name} pattern {pattern} set, "
                    f"expected linear (every batch's schedule starts linear)"
                )
        if first and first_loaded != words:
            raise ProgramError(
                f"the first-input chunks load {first_loaded} input words, expected "
                f"{words} (in_tiles * batch)"
            )
        if stream_rows != h["out_tiles"]:
            raise ProgramError(
                f"schedule has {stream_rows} POSTPROCs to the result stream, "
                f"expected out_tiles {h['out_tiles']}"
            )

    def _chunk(self, i: int, what: str, loaded: int, words: int) -> int:
        """Check schedule item ``i``, an input chunk (``what``: next-input or
        first-input), against the input words loaded so far; returns them with it."""
        start, count = int(self.schedule["start"][i]), int(self.schedule["count"][i])
        if start < 0 or count < 1 or start + count > words:
            raise ProgramError(
                f"schedule item {i}: {what} chunk start {start} count {count}, expected a "
                f"non-empty chunk inside input words [0, {words}) (in_tiles * batch)"
            )
        if start != loaded:
            raise ProgramError(
                f"schedule item {i}: {what} chunk starts at {start}, expected {loaded} "
                f"(the chunks load input words 0..{words - 1} once, in order)"
            )
        return loaded + count

    # -- the beat stream ------------------------------------------------------------
    def input_words(self, x: np.ndarray) -> list:
        """One batch of int8 inputs ``[batch, in_features]`` as activation words."""
        if self.image is not None:
            return self._image_words(x)
        R, B, kt = self.config.rows, self.batch, self.header["in_tiles"]
        xp = np.zeros((B, kt * R), np.int8)
        xp[: len(x), : x.shape[1]] = x
        words = xp.reshape(B, kt, R).transpose(1, 0, 2).reshape(kt * B, R)
        out = np.zeros((kt * B, self.config.stream_bytes), np.uint8)
        out[:, :R] = words.view(np.uint8)
        return out

    def _image_words(self, x):
        """A batch of images (NCHW-flattened rows) as padded NHWC maps, the padding
        holding the zero point; missing images of a partial batch are zero."""
        R, B = self.config.rows, self.batch
        c, hh, ww = self.image["shape"]
        p, (k, s) = self.image["pad"], self.image["patch"]
        padded = np.full((len(x), c, hh + 2 * p, ww + 2 * p), self.image["zero_point"], np.int8)
        padded[:, :, p : p + hh, p : p + ww] = x.reshape(-1, c, hh, ww)
        if k > 1 or s > 1:  # the first layer's windows, (c, kh, kw) order, as channels
            oh, ow = (hh + 2 * p - k) // s + 1, (ww + 2 * p - k) // s + 1
            win = [
                padded[:, :, kh : kh + s * (oh - 1) + 1 : s, kw : kw + s * (ow - 1) + 1 : s]
                for kh in range(k)
                for kw in range(k)
            ]  # each [n, c, oh, ow]
            pixels = np.stack(win, axis=2).reshape(len(x), c * k * k, oh, ow)
        else:
            pixels = padded
        n, cc, hh2, ww2 = pixels.shape
        t = -(-cc // R)
        maps = np.zeros((B, hh2, ww2, t * R), np.int8)
        maps[:n, :, :, :cc] = pixels.transpose(0, 2, 3, 1)
        out = np.zeros((maps.size // R, self.config.stream_bytes), np.uint8)
        out[:, :R] = maps.reshape(-1, R).view(np.uint8)
        return out

    def _load(self, target, addr, data):
        return np.concatenate(
            [
                word_beats(
                    [isa.encode(Opcode.LOAD, target=target, addr=addr, count=len(data))],
                    self.config.stream_bytes,
                ),
                data,
            ]
        )

    def _load_input(self, base, words, start, count, rows):
        """LOADs of input words ``[start, start + count)`` of a batch with ``rows`` images.

        Words are laid out ``k_tile * batch + row``; a partial batch skips the rows it
        does not have (one LOAD for each K tile's run), a full one is one LOAD.
        """
        B = self.batch
        if rows == B or self.image is not None:  # images: every one of a batch is computed
            return [self._load(Target.ACT, base + start, words[start : start + count])]
        out = []
        for kt in range(start // B, -(-(start + count) // B)):
            lo, hi = max(start, kt * B), min(start + count, kt * B + rows)
            if lo < hi:
                out.append(self._load(Target.ACT, base + lo, words[lo:hi]))
        return out

    def beats(self, inputs: np.ndarray) -> np.ndarray:
        """The complete program stream for ``inputs`` (int8 ``[n, in_features]``).

        The first batch's inputs are loaded whole after the preamble, or, when the
        schedule has first-input chunks, by those chunks of the first batch's schedule
        (later batches skip them: their inputs came with the previous batch's
        next-input chunks).
        """
        x = np.asarray(inputs)
        if x.ndim != 2 or x.shape[1] != self.in_features or x.dtype != np.int8:
            raise ProgramError(
                f"inputs must be int8 [n, {self.in_features}], not {x.dtype} {list(x.shape)}"
            )
        if len(x) == 0:
            raise ProgramError("no inputs")
        B = self.batch
        nb = -(-len(x) // B)
        words = [self.input_words(x[b * B : (b + 1) * B]) for b in range(nb)]
        regions = self.header["input_regions"]
        sb = self.config.stream_bytes
        s = self.schedule
        kind = s["kind"]
        rows = [min(B, len(x) - b * B) for b in range(nb)]
        segs = [self.preamble]
        if not np.any(kind == ITEM_FIRST_INPUT):
            segs += self._load_input(regions[0], words[0], 0, len(words[0]), rows[0])
        parity_beats = {parity: word_beats(s[parity], sb) for parity in ("even", "odd")}
        tail = len(x) - (nb - 1) * B
        for b in range(nb):
            parity = "even" if b % 2 == 0 else "odd"
            wb = parity_beats[parity]
            if b == nb - 1 and tail < B and self.image is None:
                # a partial last batch computes only its rows
                wb = word_beats(self._with_rows(s[parity], tail), sb)
            run_start = 0
            for i in np.flatnonzero(kind != ITEM_WORD):
                segs.append(wb[run_start:i])
                run_start = i + 1
                start, count = int(s["start"][i]), int(s["count"][i])
                if kind[i] == ITEM_BLOCK:
                    segs.append(self.blocks[s["block"][i]])
                elif kind[i] == ITEM_FIRST_INPUT:
                    if b == 0:
                        segs.extend(self._load_input(regions[0], words[0], start, count, rows[0]))
                elif b + 1 < nb:
                    segs.extend(
                        self._load_input(
                            regions[(b + 1) % 2], words[b + 1], start, count, rows[b + 1]
                        )
                    )
            segs.append(wb[run_start:])
        segs.append(word_beats([isa.encode(Opcode.END)], sb))
        return np.concatenate(segs)

    def _with_rows(self, words, m):
        """Instruction words with every MATMUL/POSTPROC row count set to ``m``."""
        out = np.array(words, np.uint64)
        for i, w in enumerate(out):
            try:
                op, f = isa.decode(int(w))
            except isa.InstructionError:
                continue
            stepping = op is Opcode.MATMUL and f["tile_step"]  # m counts tiles, not rows
            if op in (Opcode.MATMUL, Opcode.POSTPROC) and f["m"] == self.batch and not stepping:
                out[i] = isa.encode(op, **{**f, "m": m})
        return out

    def parse_output(self, out_beats: np.ndarray, n_images: int) -> tuple[np.ndarray | None, dict]:
        """Result beats -> ``(outputs [n, out_features], status dict)``.

        Raises
        ------
        ProgramError
            If the number of result beats does not match the program.
        """
        out = np.asarray(out_beats, np.uint8)
        ns = len(isa.STATUS_FIELDS)
        if len(out) < ns:
            raise ProgramError(f"no status packet: only {len(out)} result beats")
        status = status_packet(out)
        body = out[: len(out) - ns]
        cfg, B = self.config, self.batch
        nt = self.header["out_tiles"]
        per_row = cfg.raw_beats if self.header["raw"] else 1
        if status["error"] != 0:
            return None, status
        image = self.image is not None  # every image of a batch is computed
        sent = -(-n_images // B) * B if image else n_images
        if len(body) != sent * nt * per_row:
            raise ProgramError(f"{len(body)} result beats, expected {sent * nt * per_row}")
        outs = []
        for b0 in range(0, n_images, B):
            rows = B if image else min(B, n_images - b0)
            chunk, body = body[: nt * rows * per_row], body[nt * rows * per_row :]
            if self.header["raw"]:
                v = chunk.reshape(nt, rows, per_row * cfg.stream_bytes)[..., : 4 * cfg.cols]
                v = np.ascontiguousarray(v).view("<i4")
            else:
                v = chunk.reshape(nt, rows, cfg.stream_bytes)[..., : cfg.cols].view(np.int8)
            outs.append(v.transpose(1, 0, 2).reshape(rows, nt * cfg.cols))
        return np.concatenate(outs)[:n_images, : self.out_features].copy(), status

    # -- files ----------------------------------------------------------------------
    def save(self, path: str) -> None:
        """Write the program (temporary name, then rename), its SHA-256 digest last."""
        header = {"config": self.config.to_dict(), **self.header}
        hjson = json.dumps(header, sort_keys=True).encode()
        buf = io.BytesIO()
        arrays = {f"schedule_{k}": v for k, v in self.schedule.items()}
        arrays["preamble"] = self.preamble
        for i, b in enumerate(self.blocks):
            arrays[f"block_{i}"] = b
        np.savez(buf, **arrays)
        body = MAGIC + struct.pack("<HI", VERSION, len(hjson)) + hjson + buf.getvalue()
        with atomic_write(path) as f:
            f.write(body + hashlib.sha256(body).digest())

    @classmethod
    def load(cls, path: str, config: CoreConfig | None = None) -> "Program":
        """Read a program; refuse a truncated, corrupt or foreign one, or one for another config.

        Raises
        ------
        ProgramError
            For every way the file can be wrong (and only ProgramError): unreadable,
            bad magic number or version, checksum mismatch, malformed header or arrays,
            or content inconsistent with its configuration.
        """
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError as exc:
            raise ProgramError(f"{path}: {exc.strerror}") from None
        if blob[: len(MAGIC)] != MAGIC:
            raise ProgramError(f"{path}: not a program (bad magic number)")
        fixed = len(MAGIC) + 6
        if len(blob) < fixed:
            raise ProgramError(f"{path}: truncated header")
        version, hlen = struct.unpack("<HI", blob[len(MAGIC) : fixed])
        if version != VERSION:
            raise ProgramError(f"{path}: format version {version}, this reader supports {VERSION}")
        body, digest = blob[:-DIGEST_BYTES], blob[-DIGEST_BYTES:]
        if len(blob) < fixed + DIGEST_BYTES or hashlib.sha256(body).digest() != digest:
            raise ProgramError(f"{path}: truncated or corrupt (checksum mismatch)")
        if fixed + hlen > len(body):
            raise ProgramError(
                f"{path}: header length {hlen} runs past the end of the file "
                f"({len(body) - fixed} bytes)"
            )
        try:
            header = json.loads(body[fixed : fixed + hlen])
        except (ValueError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors
            raise ProgramError(f"{path}: header is not valid JSON ({exc})") from None
        if not isinstance(header, dict):
            raise ProgramError(f"{path}: header must be a JSON object, not {type(header).__name__}")
        if "config" not in header:
            raise ProgramError(f"{path}: header has no field config")
        try:
            cfg = CoreConfig.from_dict(header.pop("config"))
        except (TypeError, ValueError) as exc:
            raise ProgramError(f"{path}: header field config: {exc}") from None
        try:
            with np.load(io.BytesIO(body[fixed + hlen :]), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:  # zipfile and numpy's readers raise many types; all mean corrupt
            raise ProgramError(
                f"{path}: the array archive is corrupt ({type(exc).__name__})"
            ) from None
        n_blocks = sum(k.startswith("block_") for k in arrays)
        expected = {
            "preamble",
            *(f"schedule_{k}" for k in SCHEDULE_ARRAYS),
            *(f"block_{i}" for i in range(n_blocks)),
        }
        if set(arrays) != expected:
            raise ProgramError(f"{path}: arrays {sorted(arrays)}, expected {sorted(expected)}")
        schedule = {k: arrays[f"schedule_{k}"] for k in SCHEDULE_ARRAYS}
        blocks = [arrays[f"block_{i}"] for i in range(n_blocks)]
        try:
            prog = cls(cfg, header, arrays["preamble"], schedule, blocks)
        except ProgramError as exc:
            raise ProgramError(f"{path}: {exc}") from None
        if config is not None:
            prog.check_config(config)
        return prog
