"""`python -m experiments [list | tour [options] | <name> [options]]`."""

from __future__ import annotations

import sys

from experiments import REGISTRY, load
from experiments._framework import ConfigError

USAGE = """usage: python -m experiments                     list the experiments
       python -m experiments <name> [options]      run one (see --help)
       python -m experiments tour [--quick] ...    run all and write one report (see tour --help)"""


def main(argv: list[str]) -> int:
    """0 on success; 2 and one `error:` line for a bad command line; 130 after Ctrl-C."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before an experiment started (e.g. while importing it)
        print("interrupted before the run started", file=sys.stderr, flush=True)
        return 130


def _main(argv: list[str]) -> int:
    if not argv or argv[0] in ("list", "-l", "--list"):
        width = max(map(len, REGISTRY))
        print("experiments (python -m experiments <name> --help):")
        for name, line in REGISTRY.items():
            print(f"  {name:<{width}}  {line}")
        print("  " + "tour".ljust(width) + "  run all of them and write runs/tour/report.html")
        return 0
    if argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] == "tour":
        from experiments._tour import main as tour_main

        return tour_main(argv[1:])
    if argv[0].startswith("-"):
        print(f"error: unknown option {argv[0]!r}; the first argument is an experiment name, 'list' or 'tour'\n"
              + USAGE, file=sys.stderr)
        return 2
    try:
        experiment = load(argv[0])
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return experiment.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
