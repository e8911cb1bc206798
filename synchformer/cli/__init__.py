"""Command line: ``synchformer <command>``; one module per command, each with ``add_parser`` and ``run``.

Errors caused by the input (a missing file, a video without sound, a bad checkpoint) print one line and
exit with code 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys

from synchformer.errors import SynchformerError
from synchformer.interrupts import Terminated, stop_cleanly_on_signals

COMMANDS = ("predict", "fix", "score", "monitor", "features", "explain", "convert", "train", "eval", "adapt", "synth",
            "demo", "models")


class _Version(argparse.Action):
    """``--version``: the installed version, looked up only when asked."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from synchformer.cli.common import version

        print(f"synchformer {version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="synchformer", description="Find and fix audio-visual offsets in videos. "
                                     "Offsets are positive when the audio leads the video.")
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = importlib.import_module(f"synchformer.cli.{name}")
        module.add_parser(sub).set_defaults(func=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value settings may follow options (`train sync --config c.json optim.lr=1e-4`): argparse leaves
    # those to us; other commands still reject anything unknown
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not getattr(args, "takes_overrides", False) or any(e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    try:
        with stop_cleanly_on_signals():
            return args.func(args) or 0
    except SynchformerError as e:
        print(f"synchformer: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("synchformer: interrupted", file=sys.stderr)
        return 130
    except Terminated as e:
        print(f"synchformer: stopped by {signal.Signals(e.signum).name}", file=sys.stderr)
        return 128 + e.signum
