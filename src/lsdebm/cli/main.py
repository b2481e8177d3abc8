"""Entry point of the ``lsdebm`` command.

Each subcommand is a module in this package exposing ``add_parser(subparsers)`` (which
registers its parser) and ``run(args) -> int``. To add one, write the module and add its
name to ``SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import warnings

from lsdebm import __version__
from lsdebm.errors import LsdebmError

SUBCOMMANDS = [
    "phantoms",
    "metrics",
    "demo",
    "view",
    "reconstruct",
    "evaluate",
    "checkpoints",
    "convert",
    "train",
    "teach",
    "bench",
]


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="lsdebm",
        description="LSD-EBM: latent-space diffusion with an energy-based prior for 3D vertebra masks.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"lsdebm.cli.{name}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; user errors print one line and return exit code 2.

    Warnings (e.g. :class:`lsdebm.errors.InputWarning`) print as one ``lsdebm: warning:`` line,
    running out of memory is exit code 1 and Ctrl-C 130, all without a traceback;
    ``LSDEBM_DEBUG=1`` shows tracebacks instead.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = ["lsdebm", *(sys.argv[1:] if argv is None else argv)]  # for provenance records
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0
    debug = _debug()
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return int(args.run(args) or 0)
        except LsdebmError as exc:
            if debug:
                raise
            print(f"lsdebm: error: {as_option(' '.join(str(exc).split()), args)}", file=sys.stderr)
            return 2
        except MemoryError:
            if debug:
                raise
            print("lsdebm: error: out of memory; use a smaller input, grid or --batch-size "
                  "(LSDEBM_DEBUG=1 shows where)", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("lsdebm: interrupted", file=sys.stderr)
            return 130


def as_option(text: str, args) -> str:
    """An error the core words with a parameter name (``epochs=0 must be > 0``), worded with the option the
    user typed (``--epochs 0 must be > 0``) when this command has that option and it holds that value."""
    match = re.match(r"(?:[A-Z]\w*\.)?([A-Za-z]\w*)=(\S+?)(:?) (.*)", text)  # ThickSliceParams.thickness=100.0: ...
    if match is None or str(getattr(args, match[1], None)) != match[2]:
        return text
    return f"--{match[1].replace('_', '-')} {match[2]}{match[3]} {match[4]}"


def _debug() -> bool:
    return os.environ.get("LSDEBM_DEBUG", "") not in ("", "0")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as one line (``lsdebm: warning: ...``); LSDEBM_DEBUG=1 adds its origin."""
    where = f" [{category.__name__} at {filename}:{lineno}]" if _debug() else ""
    text = " ".join(str(message).split())
    print(f"lsdebm: warning: {text}{where}", file=sys.stderr if file is None else file)


def entry() -> None:
    """The ``lsdebm`` program: :func:`main`, then leave with its exit code.

    A ``torchrun`` worker leaves through ``os._exit`` once its output is flushed: it has written
    its files and released its process group, and the C++ teardown that would follow (gloo's
    threads, torch's static objects) aborts now and then with "terminate called without an
    active exception" (1 run in ~55 of ``tests/test_distributed.py`` on 2 busy cores), which
    turns a finished training run into a failed one.
    """
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `lsdebm ... | head`: the reader left; say nothing more, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        sys.exit(141)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
