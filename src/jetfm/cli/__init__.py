"""`jetfm <command>`: one thin subcommand per stage; the logic lives in the library.

Each module in :data:`COMMAND_MODULES` defines ``register(subparsers)`` and adds its commands;
handlers import heavy libraries lazily so ``jetfm --help`` stays fast. Bad input raises
:class:`jetfm.errors.InputError`, printed here as one line with exit code 2 (``--debug`` shows the
traceback). Trainings print their progress bar and summary; Lightning's banners and warnings go
to ``RUN/logs/lightning.log`` (``--verbose`` shows them instead).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from jetfm import __version__
from jetfm.errors import InputError
from jetfm.train.quiet import set_verbose

#: command modules, in the order their commands appear in ``jetfm --help``
COMMAND_MODULES = ("data", "simulate", "production", "models", "classify", "evaluate", "anomaly",
                   "demo")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse's own usage errors exit 2 as well
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="jetfm", description="Jet foundation models on open LHC data.")
    parser.add_argument("--version", action="version", version=f"jetfm {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--verbose", action="store_true",
                        help="show Lightning's messages and warnings on the terminal (by default "
                             "they go to RUN/logs/lightning.log)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(f"jetfm.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"jetfm.cli.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or a usage error (one line, code 2)
        return done.code if isinstance(done.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    set_verbose(args.verbose)
    try:
        rc = args.func(args)
    except InputError as err:
        if args.debug:
            raise
        print(f"jetfm: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jetfm: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
