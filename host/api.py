"""Bring your own model: one call from a PyTorch module (or an ONNX file) to a program
for the core, and one object to run it, check it and measure it.

>>> import torch
>>> from torch import nn
>>> from host import accelerate
>>> torch.manual_seed(0)                                 # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 20), nn.ReLU(), nn.Linear(20, 5))
>>> images = torch.rand(100, 1, 8, 8)
>>> acc = accelerate(model, images)                      # capture, quantize, compile
>>> pred = acc.predict(images[:10])                      # the model backend by default
>>> bool((pred.outputs == acc.golden(images[:10])).all())
True
>>> pred.labels.shape, pred.cycles == pred.predicted_cycles
((10,), True)

``backend="rtl"`` runs the same program on the generated Verilog in Verilator,
``"gate"`` on the synthesized netlist; all three give the same bytes.
"""

import dataclasses
import json
import os

import numpy as np
import torch
from torch import nn

from systolic.hw.config import CoreConfig

from . import golden, metrics
from .backends import BACKENDS, BackendError, get_backend
from .compile import CompileError, Program, compile_model, max_batch
from .nn.pt2e import quantize_dense
from .nn.qmodel import QuantError, QuantizedModel
from .nn.torch_frontend import capture
from .run import DEFAULT_CLOCK_MHZ, run_images

__all__ = ["Accelerator", "Prediction", "accelerate"]


@dataclasses.dataclass
class Prediction:
    """What :meth:`Accelerator.predict` returns.

    Members
    -------
    outputs : int8 ndarray [N, out_features]
        The network's quantized outputs, as the core computed them.
    labels : ndarray [N]
        ``outputs.argmax(1)`` (for classifiers).
    scores : float ndarray [N, out_features]
        ``outputs`` dequantized with the output scale and zero point.
    backend : str
    cycles, predicted_cycles : int
        Core cycles (summed over shards) and the cycle model's prediction.
    status : dict
        The status packet's counters, summed.
    """

    outputs: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    backend: str
    cycles: int
    predicted_cycles: int
    status: dict


class Accelerator:
    """A quantized network compiled for one core configuration.

    Build one with :func:`accelerate` (PyTorch) or :meth:`from_onnx`; ``program`` is
    what the core runs, ``qmodel`` the integer network (the golden model's input).
    """

    def __init__(
        self,
        qmodel: QuantizedModel,
        config: CoreConfig,
        batch: int | None = None,
        quantize_input=None,
        reference=None,
    ):
        self.qmodel = qmodel
        self.config = config
        limit = max_batch(qmodel, config)
        if limit == 0:
            raise CompileError(
                f"the network does not fit the {config.rows}x{config.cols} "
                f"core's buffers even at batch 1"
            )
        self.batch = min(64, limit) if batch is None else batch
        self.program: Program = compile_model(qmodel, config, self.batch)
        self._quantize = quantize_input
        self.reference = reference

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_onnx(
        cls, path: str, config: CoreConfig | None = None, batch: int | None = None
    ) -> "Accelerator":
        """A quantized ONNX file (QDQ, QLinearMatMul or MatMulInteger; see
        :mod:`systolic.host.nn.onnx_frontend`); ONNX Runtime is its reference."""
        from .nn.onnx_frontend import OnnxReference, load_onnx

        qmodel = load_onnx(path)
        return cls(
            qmodel,
            config or CoreConfig(),
            batch,
            lambda x: qmodel.quantize_float(x.numpy()),
            OnnxReference(path, qmodel),
        )

    @classmethod
    def load(
        cls, path: str, config: CoreConfig | None = None, batch: int | None = None
    ) -> "Accelerator":
        """A network saved by :meth:`save` (its config too, unless one is given)."""
        qmodel = QuantizedModel.load(path)
        saved = qmodel.meta.get("core_config")
        if config is None:
            if not isinstance(saved, dict):
                raise QuantError(f"{path}: records no core configuration; pass config=")
            config = CoreConfig.from_dict(saved)
        first = qmodel.layers[0]
        if "onnx" in qmodel.meta:  # quantize inputs as the network's own front end did
            quantize = lambda x: qmodel.quantize_float(x.numpy())  # noqa: E731
        else:
            quantize = lambda x: _quantize_like_torch(  # noqa: E731
                x, first.input_scale, first.input_zero_point
            )
        return cls(qmodel, config, batch or qmodel.meta.get("batch"), quantize)

    def save(self, path: str) -> None:
        """The integer network and the core configuration, as a ``.qnpz`` file (the
        program is compiled again on :meth:`load`, deterministically)."""
        meta = {**self.qmodel.meta, "core_config": self.config.to_dict(), "batch": self.batch}
        QuantizedModel(
            self.qmodel.layers, json.loads(json.dumps(meta)), self.qmodel.input_shape
        ).save(path)

    # -- running --------------------------------------------------------------------
    def quantize(self, x) -> np.ndarray:
        """Float inputs ``[N, ...]`` -> the int8 ``[N, in_features]`` the core takes."""
        x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
        if x.ndim < 2 or int(np.prod(x.shape[1:])) != self.qmodel.in_features:
            raise ValueError(
                f"inputs must be [N, ...] with {self.qmodel.in_features} "
                f"values each, not {list(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(
                f"inputs must be floating point (the model's own input), not {x.dtype}"
            )
        return self._quantize(x.reshape(len(x), -1))

    def golden(self, x) -> np.ndarray:
        """The integer golden model's int8 outputs for float inputs ``x``."""
        return golden.run(self.qmodel, self.quantize(x))

    def predict(self, x, backend: str = "model", **options) -> Prediction:
        """Run float inputs ``x`` ``[N, ...]`` through a backend.

        ``options`` go to the backend (for ``rtl``/``gate``: ``sim``, ``gap``, ``stall``,
        ``seed``). Raises :class:`BackendError` when the core reports an error.
        """
        if backend not in BACKENDS:
            raise BackendError(
                f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}"
            )
        q = self.quantize(x)
        runner = get_backend(backend, self.config, **options)
        runner.prepare()
        run = run_images(runner, self.program, q, progress=False)
        if run["outputs"] is None:
            raise BackendError(f"the core reported error {run['status']['error']}")
        out = run["outputs"]
        last = self.qmodel.layers[-1]
        scores = (out.astype(np.float64) - last.output_zero_point) * last.output_scale
        return Prediction(
            outputs=out,
            labels=out.argmax(1),
            scores=scores,
            backend=backend,
            cycles=run["cycles"],
            predicted_cycles=run["predicted_cycles"],
            status=run["status"],
        )

    def report(self, images: int | None = None, clock_mhz: float = DEFAULT_CLOCK_MHZ) -> dict:
        """Cycles, utilization, latency and throughput at ``clock_mhz``, and on-chip
        memory, from the exact cycle model on ``images`` inputs (default: one batch)."""
        n = self.batch if images is None else images
        q = np.zeros((n, self.qmodel.in_features), np.int8)
        res = get_backend("model", self.config).run(self.program, q)
        useful = self.program.useful_macs(n)
        return {
            "config": self.config.tag,
            "rows": self.config.rows,
            "cols": self.config.cols,
            "batch": self.batch,
            "images": n,
            "sizes": self.qmodel.sizes,
            **metrics.run_figures(self.config, useful, res.status, n, clock_mhz),
            "onchip_bytes": metrics.onchip_bytes(self.program),
        }


def _quantize_like_torch(x: torch.Tensor, scale: float, zero_point: int) -> np.ndarray:
    """``quantize_per_tensor`` as the PT2E graph's first op does it."""
    q = torch.ops.quantized_decomposed.quantize_per_tensor.default(
        x.to(torch.float32), scale, zero_point, -128, 127, torch.int8
    )
    return q.numpy()


def accelerate(
    model: nn.Module | str | os.PathLike,
    calibration=None,
    *,
    config: CoreConfig | None = None,
    batch: int | None = None,
) -> Accelerator:
    """Capture, quantize and compile a network for the core.

    Parameters
    ----------
    model : nn.Module, or the path of an ``.onnx`` file
        A module that ``torch.export`` captures as a chain of Linear, ReLU,
        BatchNorm1d (folded), Flatten and Dropout; anything else is refused by name.
    calibration : float Tensor or ndarray [N, ...]
        Inputs for the PT2E observers (for a module; an ONNX file carries its scales).
        Its first two rows are also the example input of ``torch.export``.
    config : CoreConfig, optional
        The core (default 8x8).
    batch : int, optional
        Inputs per batch (default 64, or the most the buffers hold).

    Raises
    ------
    QuantError
        The model cannot run on the core (the message names the op and where it is),
        or the calibration data is unusable.
    CompileError
        The network does not fit the configuration.
    """
    config = config or CoreConfig()
    if not isinstance(config, CoreConfig):
        raise CompileError(f"config must be a CoreConfig, not {type(config).__name__}")
    if isinstance(model, (str, os.PathLike)):
        if calibration is not None:
            raise QuantError("an ONNX file carries its own scales: pass no calibration data")
        return Accelerator.from_onnx(os.fspath(model), config, batch)
    if calibration is None:
        raise QuantError("calibration inputs are needed to quantize a PyTorch module")
    x = torch.as_tensor(calibration) if not isinstance(calibration, torch.Tensor) else calibration
    if x.ndim < 2 or len(x) == 0 or not x.is_floating_point():
        raise QuantError(
            f"calibration must be floating-point inputs [N >= 1, ...], not "
            f"{x.dtype} {list(x.shape)}"
        )
    layers = capture(model, x[:2])
    qmodel, reference = quantize_dense(layers, x.reshape(len(x), -1).to(torch.float32))
    return Accelerator(qmodel, config, batch, reference.quantize_input, reference)
