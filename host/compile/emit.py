"""The schedule of one batch as it is written: instruction words, weight blocks, the
first batch's input chunks, and the slots where the next batch's inputs are loaded.

Both lowerings (:mod:`.compiler` for Linear stacks, :mod:`.conv` for convolutional
networks) write their instructions through one :class:`Emitter`, which also assembles
the preamble's LOADs and spreads the next batch's input words over the batch.
"""

import numpy as np

from systolic.hw import isa
from systolic.hw.config import CoreConfig
from systolic.hw.isa import LoopTarget, Opcode, Target

from .plan import CompileError
from .program import ITEM_BLOCK, ITEM_FIRST_INPUT, ITEM_NEXT_INPUT, ITEM_WORD, word_beats

__all__ = ["Emitter", "Tiles", "load_beats", "tile_beats", "scale_words"]


def load_beats(cfg: CoreConfig, target: Target, addr: int, data: np.ndarray) -> np.ndarray:
    """A LOAD header and its data beats."""
    header = isa.encode(Opcode.LOAD, target=target, addr=addr, count=len(data))
    return np.concatenate([word_beats([header], cfg.stream_bytes), data])


def tile_beats(cfg: CoreConfig, tile: np.ndarray) -> np.ndarray:
    """One ``rows x cols`` int8 weight tile as ``rows`` LOAD data beats."""
    beats = np.zeros((cfg.rows, cfg.stream_bytes), np.uint8)
    beats[:, : cfg.cols] = tile.view(np.uint8)
    return beats


def scale_words(layer, n_words: int, cfg: CoreConfig, what: str) -> list:
    """The :data:`systolic.hw.isa.SCALE_WORD` of each of ``n_words * cols`` channels (zeros past
    the layer's outputs)."""
    n = len(layer.mult)
    out = []
    for c in range(n_words * cfg.cols):
        mult, shift = (int(layer.mult[c]), int(layer.shift[c])) if c < n else (0, 0)
        try:
            out.append(
                isa.encode_scale(mult, shift, layer.zero_point, layer.relu, layer.round_even)
            )
        except isa.InstructionError as exc:
            raise CompileError(f"{what}, output channel {c}: {exc}") from None
    return out


class Emitter:
    """The items of one batch's schedule, in order.

    Parameters
    ----------
    cfg : CoreConfig
    regions : [int, int]
        The two input regions; a word whose field depends on the region is written
        twice (even batches read region 0, odd batches region 1).
    """

    def __init__(self, cfg: CoreConfig, regions):
        self.cfg = cfg
        self.regions = regions
        self.items = []  # (kind, even, odd, start, count, block)
        self.blocks = []
        self.engine = 0  # engine instructions so far
        self.input_slots = []  # item positions after which a next-input chunk may go
        self._patterns = {LoopTarget.READ: None, LoopTarget.WRITE: None}
        #: ``tile(weights) -> slot``: where the next weight tile goes (:meth:`Tiles.place`)
        self.tile = None

    def word(self, op: Opcode, region_dependent: str | None = None, **fields) -> None:
        even = isa.encode(op, **fields)
        odd = even
        if region_dependent is not None:
            moved = fields[region_dependent] - self.regions[0] + self.regions[1]
            odd = isa.encode(op, **{**fields, region_dependent: moved})
        self.items.append((ITEM_WORD, even, odd, 0, 0, 0))
        if op in (Opcode.MATMUL, Opcode.POSTPROC):
            self.engine += 1
            if op is Opcode.MATMUL and self.engine >= self.cfg.input_reload_distance:
                self.input_slots.append((len(self.items), fields["m"]))

    def block(self, beats: np.ndarray) -> None:
        """Constant beats between two instructions (a streamed weight tile)."""
        self.blocks.append(beats)
        self.items.append((ITEM_BLOCK, 0, 0, 0, 0, len(self.blocks) - 1))

    def first_input(self, start: int, count: int) -> None:
        """Input words ``[start, start + count)`` of the batch, loaded here into input
        region 0 by the first batch of a run (later batches skip the chunk: their inputs
        came with the previous batch's next-input chunks). Written just before the first
        MATMUL that reads them, the chunks let the front end load the first batch while
        the engine works on the words already there, instead of all before the first
        MATMUL; they must cover the batch's input words once, in order (the
        :class:`~.program.Program` checks it)."""
        self.items.append((ITEM_FIRST_INPUT, 0, 0, start, count, 0))

    def pattern(self, target: LoopTarget, inner=0, outer=0, inner_stride=0, outer_stride=0):
        """Set ``target``'s address pattern (``inner == 0``: linear), with a LOOP only
        when it changes."""
        want = (inner, outer, inner_stride, outer_stride) if inner else None
        if self._patterns[target] == want:
            return
        self._patterns[target] = want
        fields = dict(zip(("inner", "outer", "inner_stride", "outer_stride"), want or (0,) * 4))
        self.word(Opcode.LOOP, target=target, **fields)

    def linear(self) -> None:
        """Both targets back to linear addressing."""
        for target in LoopTarget:
            self.pattern(target)

    def schedule(self, in_words: int, by_rows: bool = False) -> dict:
        """The schedule arrays, with the next batch's ``in_words`` input words spread over
        the input slots (or loaded after a SYNC at the end when there are none): evenly,
        or ``by_rows``, as many words after a MATMUL as it has rows (its cycles, during
        which the front end takes the words), in chunks of at least 8.

        First-input chunks stay where they were written; a next-input chunk whose slot is
        just before some goes after them, since the next MATMUL waits for those and the
        next batch's words are not needed before the batch ends."""
        items, inserts = list(self.items), {}
        slots = [(self._past_first_input(pos), rows) for pos, rows in self.input_slots]
        if slots and by_rows:
            start, budget = 0, 0
            for i, (pos, rows) in enumerate(slots):
                budget += rows
                count = min(in_words - start, budget)
                if i == len(slots) - 1:
                    count = in_words - start  # whatever is left, after the last MATMUL
                if count >= min(8, in_words - start) and count > 0:
                    inserts[pos] = (start, count)
                    start, budget = start + count, budget - count
        elif slots:
            per = max(-(-in_words // len(slots)), min(in_words, 8))
            for i, (pos, _) in enumerate(slots):
                start = i * per
                if start >= in_words:
                    break
                inserts[pos] = (start, min(per, in_words - start))
        else:
            sync = isa.encode(Opcode.SYNC)
            items.append((ITEM_WORD, sync, sync, 0, 0, 0))
            inserts[len(items)] = (0, in_words)
        final = []
        for pos, item in enumerate(items):
            if pos in inserts:
                final.append((ITEM_NEXT_INPUT, 0, 0, *inserts[pos], 0))
            final.append(item)
        if len(items) in inserts:
            final.append((ITEM_NEXT_INPUT, 0, 0, *inserts[len(items)], 0))
        arr = np.array(final, dtype=object)
        return {
            "kind": arr[:, 0].astype(np.uint8),
            "even": arr[:, 1].astype(np.uint64),
            "odd": arr[:, 2].astype(np.uint64),
            "start": arr[:, 3].astype(np.int64),
            "count": arr[:, 4].astype(np.int64),
            "block": arr[:, 5].astype(np.int64),
        }

    def _past_first_input(self, pos):
        """Item position ``pos`` moved past the first-input chunks that start there."""
        while pos < len(self.items) and self.items[pos][0] == ITEM_FIRST_INPUT:
            pos += 1
        return pos


class Tiles:
    """Where each weight tile goes, in MATMUL order: resident (all loaded by the
    preamble) when ``count`` tiles fit the weight buffer, else streamed, each just before
    its MATMUL, into a ring of ``cfg.weight_ring_slots`` slots.

    Raises
    ------
    CompileError
        When the tiles neither fit nor leave room for the ring.
    """

    def __init__(self, cfg: CoreConfig, count: int, em: Emitter, stream: bool = True):
        self.cfg, self.count, self.em = cfg, count, em
        self.resident = count <= cfg.weight_depth
        self.tiles = []
        if self.resident:
            return
        if not stream:
            raise CompileError(
                f"the network takes {count} weight tiles, the weight buffer holds "
                f"{cfg.weight_depth}"
            )
        if cfg.weight_ring_slots > cfg.weight_depth:
            raise CompileError(
                f"the weight buffer holds {cfg.weight_depth} tiles; streaming "
                f"weights needs at least {cfg.weight_ring_slots}"
            )

    def place(self, tile: np.ndarray) -> int:
        """The slot of the next tile (streamed ones are written into the schedule)."""
        i = len(self.tiles)
        self.tiles.append(tile)
        if self.resident:
            return i
        slot = i % self.cfg.weight_ring_slots
        self.em.block(load_beats(self.cfg, Target.WEIGHT, slot, tile_beats(self.cfg, tile)))
        return slot

    def preamble(self) -> list:
        """The preamble's LOAD of the resident tiles (none when streamed)."""
        if len(self.tiles) != self.count:
            raise AssertionError(f"{len(self.tiles)} tiles placed, {self.count} planned")
        if not self.resident:
            return []
        rows = np.concatenate([tile_beats(self.cfg, t) for t in self.tiles])
        return [load_beats(self.cfg, Target.WEIGHT, 0, rows)]
