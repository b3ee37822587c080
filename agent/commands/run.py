"""`anc-agent run --config PATH`: the device daemon (what systemd starts).

The config is parsed before anything heavy is imported, so a bad file fails fast with exit code 2 and
one line naming the file, the field and the allowed values. numba's on-disk cache makes restarts quick:
when the installed package directory is not writable (the normal case under systemd), the cache lives
in `<state_dir>/numba-cache` (NUMBA_CACHE_DIR, set before numba is first imported).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from agent.config import DEFAULT_CONFIG_PATH, ConfigError, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        type=Path,
        default=DEFAULT_CONFIG_PATH,
        help=f"agent config file (default {DEFAULT_CONFIG_PATH})",
    )


def configure_numba_cache(state_dir: Path) -> None:
    """Point numba's cache at the state dir when the package directory cannot hold it."""
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    package_dir = Path(__file__).resolve().parent.parent
    if not os.access(package_dir, os.W_OK):
        os.environ["NUMBA_CACHE_DIR"] = str(state_dir / "numba-cache")


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"anc-agent run: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    configure_numba_cache(config.state_dir)
    from agent.service.daemon import Daemon

    daemon = Daemon(config, started_at=t0)
    try:
        daemon.install_signal_handlers()
        daemon.start()
    except ConfigError as exc:
        print(f"anc-agent run: {exc}", file=sys.stderr)
        return 2
    code = daemon.serve()
    # Everything is persisted (final checkpoint fsynced, sync layer stopped): skip the interpreter's
    # slow teardown of numba/LLVM (about a second) so a stop stays well inside systemd's budget.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
