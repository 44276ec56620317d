"""The compiled program: the contract between the host and every backend.

A :class:`Program` holds the resident preamble (weights, biases, requantization
parameters: LOAD beats), one batch's schedule, and the layout of inputs and
outputs. :meth:`Program.beats` assembles the complete beat stream for a set of
images: the preamble, the first batch's images, then every batch's schedule, each
carrying the next batch's images in LOAD chunks between its MATMULs, then END.

File format (``.prog``): the magic ``SYSTPROG``, a little-endian uint16 format
version, a uint32 header length, the JSON header (configuration, shapes, layout),
then an ``.npz`` archive with the preamble beats and the schedule arrays.
"""

import io
import json
import struct

import numpy as np

from hw import isa
from hw.config import CoreConfig
from hw.isa import Opcode, Target

from .files import atomic_write

__all__ = ["Program", "ProgramError", "MAGIC", "VERSION", "ITEM_WORD", "ITEM_NEXT_INPUT",
           "ITEM_BLOCK"]

MAGIC = b"SYSTPROG"
VERSION = 1
ITEM_WORD, ITEM_NEXT_INPUT, ITEM_BLOCK = 0, 1, 2


class ProgramError(ValueError):
    """A program that is malformed, truncated, or for another configuration."""


def _word_beats(words, sb):
    words = np.asarray(words, np.uint64)
    out = np.zeros((len(words), sb), np.uint8)
    out[:, :8] = words.astype("<u8").view(np.uint8).reshape(-1, 8)
    return out


class Program:
    """A compiled network (or single matmul) for one :class:`CoreConfig`.

    Parameters
    ----------
    config : CoreConfig
    header : dict
        ``batch``, ``in_features``, ``out_features``, ``in_tiles`` (activation words a
        row of input takes), ``input_regions`` (two base addresses), ``out_tiles``,
        ``raw`` (int32 outputs), ``useful_macs_per_row``, ``sizes`` and notes.
    preamble : uint8 [n, stream_bytes]
        Resident loads, streamed once.
    schedule : dict of arrays
        ``kind`` (ITEM_*), ``even``/``odd`` (instruction words for batches using input
        region 0/1), ``start``/``count`` (next-input chunks), ``block`` (index into
        ``blocks``, constant beats such as streamed weights).
    blocks : list of uint8 [n, stream_bytes]
    """

    def __init__(self, config, header, preamble, schedule, blocks=()):
        self.config = config
        self.header = dict(header)
        self.preamble = np.asarray(preamble, np.uint8).reshape(-1, config.stream_bytes)
        self.schedule = {k: np.asarray(v) for k, v in schedule.items()}
        self.blocks = [np.asarray(b, np.uint8).reshape(-1, config.stream_bytes) for b in blocks]
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

    def useful_macs(self, n_images):
        return self.header["useful_macs_per_row"] * n_images

    def check_config(self, config):
        if config != self.config:
            raise ProgramError(f"program was compiled for {self.config.tag} "
                               f"({self.config.rows}x{self.config.cols}), not for {config.tag} "
                               f"({config.rows}x{config.cols})")

    # -- validation -----------------------------------------------------------------
    def _validate(self):
        s = self.schedule
        n = len(s.get("kind", ()))
        if any(len(s.get(k, ())) != n for k in ("even", "odd", "start", "count", "block")):
            raise ProgramError("schedule arrays have different lengths")
        words = np.concatenate([s["even"][s["kind"] == ITEM_WORD],
                                s["odd"][s["kind"] == ITEM_WORD]]).astype(np.uint64)
        for w in np.unique(words):
            try:
                isa.decode(int(w))
            except isa.InstructionError as exc:
                raise ProgramError(f"schedule: {exc}") from None
        for beats in (self.preamble, *self.blocks):
            self._check_stream(beats)
        if np.any(s["block"][s["kind"] == ITEM_BLOCK] >= len(self.blocks)):
            raise ProgramError("schedule refers to a missing block")

    def _check_stream(self, beats):
        """Decode a LOAD-only beat stream (preamble or block) to catch bad opcodes."""
        words = np.ascontiguousarray(beats[:, :8]).view("<u8")[:, 0] if len(beats) else []
        pos = 0
        while pos < len(words):
            try:
                op, f = isa.decode(int(words[pos]))
            except isa.InstructionError as exc:
                raise ProgramError(f"beat {pos}: {exc}") from None
            pos += 1 + (f["count"] if op is Opcode.LOAD else 0)
        if pos != len(words):
            raise ProgramError("a LOAD's data runs past the end of its block")

    # -- the beat stream ------------------------------------------------------------
    def input_words(self, x):
        """One batch of int8 inputs ``[batch, in_features]`` as activation words."""
        R, B, kt = self.config.rows, self.batch, self.header["in_tiles"]
        xp = np.zeros((B, kt * R), np.int8)
        xp[:len(x), :x.shape[1]] = x
        words = xp.reshape(B, kt, R).transpose(1, 0, 2).reshape(kt * B, R)
        out = np.zeros((kt * B, self.config.stream_bytes), np.uint8)
        out[:, :R] = words.view(np.uint8)
        return out

    def _load(self, target, addr, data):
        return np.concatenate([_word_beats([isa.encode(Opcode.LOAD, target=target, addr=addr,
                                                       count=len(data))],
                                           self.config.stream_bytes), data])

    def _load_input(self, base, words, start, count, rows):
        """LOADs of input words ``[start, start + count)`` of a batch with ``rows`` images.

        Words are laid out ``k_tile * batch + row``; a partial batch skips the rows it
        does not have (one LOAD for each K tile's run), a full one is one LOAD.
        """
        B = self.batch
        if rows == B:
            return [self._load(Target.ACT, base + start, words[start:start + count])]
        out = []
        for kt in range(start // B, -(-(start + count) // B)):
            lo, hi = max(start, kt * B), min(start + count, kt * B + rows)
            if lo < hi:
                out.append(self._load(Target.ACT, base + lo, words[lo:hi]))
        return out

    def beats(self, inputs):
        """The complete program stream for ``inputs`` (int8 ``[n, in_features]``)."""
        x = np.asarray(inputs)
        if x.ndim != 2 or x.shape[1] != self.in_features or x.dtype != np.int8:
            raise ProgramError(f"inputs must be int8 [n, {self.in_features}], not "
                               f"{x.dtype} {list(x.shape)}")
        if len(x) == 0:
            raise ProgramError("no inputs")
        B = self.batch
        nb = -(-len(x) // B)
        words = [self.input_words(x[b * B:(b + 1) * B]) for b in range(nb)]
        regions = self.header["input_regions"]
        sb = self.config.stream_bytes
        s = self.schedule
        kind = s["kind"]
        rows = [min(B, len(x) - b * B) for b in range(nb)]
        segs = [self.preamble,
                *self._load_input(regions[0], words[0], 0, len(words[0]), rows[0])]
        word_beats = {parity: _word_beats(s[parity], sb) for parity in ("even", "odd")}
        tail = len(x) - (nb - 1) * B
        for b in range(nb):
            parity = "even" if b % 2 == 0 else "odd"
            wb = word_beats[parity]
            if b == nb - 1 and tail < B:   # a partial last batch computes only its rows
                wb = _word_beats(self._with_rows(s[parity], tail), sb)
            run_start = 0
            for i in np.flatnonzero(kind != ITEM_WORD):
                segs.append(wb[run_start:i])
                run_start = i + 1
                if kind[i] == ITEM_BLOCK:
                    segs.append(self.blocks[s["block"][i]])
                elif b + 1 < nb:
                    start, count = int(s["start"][i]), int(s["count"][i])
                    segs.extend(self._load_input(regions[(b + 1) % 2], words[b + 1], start,
                                                 count, rows[b + 1]))
            segs.append(wb[run_start:])
        segs.append(_word_beats([isa.encode(Opcode.END)], sb))
        return np.concatenate(segs)

    def _with_rows(self, words, m):
        """Instruction words with every MATMUL/POSTPROC row count set to ``m``."""
        out = np.array(words, np.uint64)
        for i, w in enumerate(out):
            try:
                op, f = isa.decode(int(w))
            except isa.InstructionError:
                continue
            if op in (Opcode.MATMUL, Opcode.POSTPROC) and f["m"] == self.batch:
                out[i] = isa.encode(op, **{**f, "m": m})
        return out

    def parse_output(self, out_beats, n_images):
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
        status = {name: int(out[len(out) - ns + i, :4].copy().view("<u4")[0])
                  for i, name in enumerate(isa.STATUS_FIELDS)}
        body = out[:len(out) - ns]
        cfg, B = self.config, self.batch
        nt = self.header["out_tiles"]
        per_row = cfg.raw_beats if self.header["raw"] else 1
        if status["error"] != 0:
            return None, status
        if len(body) != n_images * nt * per_row:
            raise ProgramError(f"{len(body)} result beats, expected {n_images * nt * per_row}")
        outs = []
        for b0 in range(0, n_images, B):
            rows = min(B, n_images - b0)
            chunk, body = body[:nt * rows * per_row], body[nt * rows * per_row:]
            if self.header["raw"]:
                v = chunk.reshape(nt, rows, per_row * cfg.stream_bytes)[..., :4 * cfg.cols]
                v = np.ascontiguousarray(v).view("<i4")
            else:
                v = chunk.reshape(nt, rows, cfg.stream_bytes)[..., :cfg.cols].view(np.int8)
            outs.append(v.transpose(1, 0, 2).reshape(rows, nt * cfg.cols))
        return np.concatenate(outs)[:, :self.out_features].copy(), status

    # -- files ----------------------------------------------------------------------
    def save(self, path):
        """Write the program (temporary name, then rename)."""
        header = {"config": self.config.to_dict(), **self.header}
        hjson = json.dumps(header, sort_keys=True).encode()
        buf = io.BytesIO()
        arrays = {f"schedule_{k}": v for k, v in self.schedule.items()}
        arrays["preamble"] = self.preamble
        for i, b in enumerate(self.blocks):
            arrays[f"block_{i}"] = b
        np.savez(buf, **arrays)
        blob = MAGIC + struct.pack("<HI", VERSION, len(hjson)) + hjson + buf.getvalue()
        with atomic_write(path) as f:
            f.write(blob)

    @classmethod
    def load(cls, path, config=None):
        """Read a program; refuse a truncated or foreign one, or one for another config."""
        try:
            with open(path, "rb") as f:
                blob = f.read()
        except OSError as exc:
            raise ProgramError(f"{path}: {exc.strerror}") from None
        if blob[:len(MAGIC)] != MAGIC:
            raise ProgramError(f"{path}: not a program (bad magic number)")
        fixed = len(MAGIC) + 6
        if len(blob) < fixed:
            raise ProgramError(f"{path}: truncated header")
        version, hlen = struct.unpack("<HI", blob[len(MAGIC):fixed])
        if version != VERSION:
            raise ProgramError(f"{path}: format version {version}, this reader supports "
                               f"{VERSION}")
        try:
            header = json.loads(blob[fixed:fixed + hlen])
            cfg = CoreConfig.from_dict(header.pop("config"))
            with np.load(io.BytesIO(blob[fixed + hlen:]), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as exc:
            raise ProgramError(f"{path}: truncated or corrupt ({type(exc).__name__})") from None
        schedule = {k[len("schedule_"):]: v for k, v in arrays.items() if k.startswith("schedule_")}
        blocks = [arrays[f"block_{i}"] for i in range(sum(k.startswith("block_") for k in arrays))]
        try:
            prog = cls(cfg, header, arrays["preamble"], schedule, blocks)
        except (KeyError, ValueError) as exc:
            raise ProgramError(f"{path}: {exc}") from None
        if config is not None:
            prog.check_config(config)
        return prog
