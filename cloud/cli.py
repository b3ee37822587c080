"""`anc-cloud`: the cloud side's command line (`anc-cloud GROUP COMMAND ...`).

Each command is a module with two functions, `add_arguments(parser)` and `run(args) -> int`,
listed in COMMANDS under its group and imported only when used.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# group -> command -> (module implementing it, one-line help).
COMMANDS: dict[str, dict[str, tuple[str, str]]] = {
    "local": {
        "shadow": ("cloud.local.shadow_service", "run the local Device Shadow service on an MQTT broker"),
        "demo": ("cloud.local.demo", "run the device agent on the simulated plant with the local cloud"),
    },
}

GROUP_HELP: dict[str, str] = {
    "local": "the local stack that stands in for AWS IoT Core",
}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="anc-cloud", description=__doc__.splitlines()[0])
    groups = parser.add_subparsers(dest="group", metavar="GROUP")
    for group, commands in COMMANDS.items():
        group_parser = groups.add_parser(group, help=GROUP_HELP.get(group), description=GROUP_HELP.get(group))
        sub = group_parser.add_subparsers(dest="command", metavar="COMMAND")
        for name, (module, help_text) in commands.items():
            p = sub.add_parser(name, help=help_text, description=help_text)
            if args_list[:2] == [group, name]:
                importlib.import_module(module).add_arguments(p)
    args = parser.parse_args(args_list)
    if args.group is None:
        parser.print_help()
        return 2
    if args.command is None:
        parser.parse_args([args.group, "--help"])
        return 2
    module, _help = COMMANDS[args.group][args.command]
    return int(importlib.import_module(module).run(args))


if __name__ == "__main__":
    sys.exit(main())
