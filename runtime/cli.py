"""The `mlrt` console script (also `python -m runtime`).

Each subcommand lives in its own module under runtime.commands and exposes
NAME, HELP, add_arguments(parser) and run(args) -> exit code. Modules import
their heavy dependencies inside run(), so `mlrt --help` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence

from . import __version__

COMMAND_MODULES = (
    "runtime.commands.serve",
    "runtime.commands.demo",
    "runtime.commands.profile",
    "runtime.commands.drift",
    "runtime.commands.predict",
    "runtime.commands.validate",
    "runtime.commands.gate",
    "runtime.commands.registry",
    "runtime.commands.traffic",
    "runtime.commands.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlrt",
        description="Serve ML models over the Open Inference Protocol and watch them for drift.",
    )
    parser.add_argument("--version", action="version", version=f"mlrt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        cmd = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse takes a command's positionals in one run, so `serve a.onnx --port 9000
        # b.onnx` would leave b.onnx over: models may come anywhere among the options.
        if getattr(args, "models", None) is None or any(a.startswith("-") for a in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.models = [*args.models, *extra]
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # here, where a reader that went away can be told apart
        return code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`mlrt drift ... | head`): nothing left to say to it. Point
        # stdout at /dev/null so the interpreter's final flush does not fail once more.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
