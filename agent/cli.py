"""`anc-agent`: the device agent's command line.

Each subcommand lives in `agent/commands/<name>.py` with two functions,
`add_arguments(parser)` and `run(args) -> int`, and is imported only when used, so a
quick command never pays for numba compilation it does not need.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> one-line help; the module agent.commands.<name> implements it.
COMMANDS: dict[str, str] = {
    "run": "run the device daemon (audio engine, control thread, cloud sync); what systemd starts",
    "simulate": "run the controller on a simulated acoustic plant and report the figures",
    "bench": "measure every kernel against peers (C reference, padasip, pyroomacoustics)",
    "detect": "scan WAV recordings for sirens, alarms and horns with the on-device detector",
}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="anc-agent", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if args_list and args_list[0] == name:
            importlib.import_module(f"agent.commands.{name}").add_arguments(p)
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(f"agent.commands.{args.command}")
    return int(module.run(args))


if __name__ == "__main__":
    sys.exit(main())
