"""The command line: ``python -m host <command> [options]`` (``python -m host --help``).

Each command is a thin layer over the library (parse, check the options before any
work, call, print); errors are one line on stderr and a non-zero exit.
"""

import importlib
import sys

__all__ = ["COMMANDS", "main"]

#: command -> (module under host.cli, function, one line of help)
COMMANDS = {
    "train": ("train", "main", "train the MNIST MLP in PyTorch, save the checkpoint"),
    "quantize": ("quantize", "main", "int8-quantize a checkpoint, report against PyTorch"),
    "infer": ("infer", "main", "MNIST through a backend, checked against golden and PyTorch"),
    "bench": ("bench", "main", "the core against PyTorch on this CPU: JSON, report, plots"),
    "bench-core": (
        "bench",
        "main_core",
        "one large matmul through the RTL: utilization, simulation speed",
    ),
}


def _usage():
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m host <command> [options]", "", "commands:"]
    lines += [f"  {name:{width}s}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
    lines += ["", "python -m host <command> --help describes a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(
            f"error: unknown command {name!r}; expected one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module, function, _ = COMMANDS[name]
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)(rest)
