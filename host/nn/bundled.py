"""The networks that ship with the project: their names and where their files are.

In a checkout they are the top-level ``models/`` folder; an installed package carries
a copy of it as ``host/nn/_models/`` (package data, mapped from ``models/`` when the
wheel is built), so the same names work in both. Nothing here imports torch.
"""

import os

__all__ = [
    "MODEL_NAMES",
    "MODELS_DIR",
    "PACKAGED",
    "DEFAULT_CHECKPOINTS",
    "DEFAULT_QUANTIZED_MODELS",
]

_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGED_DIR = os.path.join(_HERE, "_models")
_CHECKOUT_DIR = os.path.join(_HERE, os.pardir, os.pardir, "models")

#: True when the models are the installed package's copy (read only: write elsewhere).
PACKAGED = os.path.isdir(_PACKAGED_DIR)
#: The shipped models: the checkout's models/ relative to the working directory (as the
#: command line prints paths), or the installed copy's absolute path.
MODELS_DIR = _PACKAGED_DIR if PACKAGED else os.path.relpath(_CHECKOUT_DIR)
#: The architectures ``--model`` names; the first is the default.
MODEL_NAMES = ("mlp", "cnn")
#: The shipped float checkpoint of each architecture.
DEFAULT_CHECKPOINTS = {name: os.path.join(MODELS_DIR, f"{name}.pt") for name in MODEL_NAMES}
#: The shipped quantized model of each architecture.
DEFAULT_QUANTIZED_MODELS = {name: os.path.join(MODELS_DIR, f"{name}.qnpz") for name in MODEL_NAMES}
