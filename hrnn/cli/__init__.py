"""The `hrnn` command line. Each subcommand lives in its own module under `hrnn/cli/` with

  HELP: str                     one line for `hrnn --help`
  add_arguments(parser)         its flags (cheap: no JAX import)
  run(args) -> int | None       the work (imports what it needs)

so that `hrnn --help` stays fast and every subcommand has its own `--help`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from hrnn.errors import HrnnError

# Subcommand name -> module under hrnn.cli.
COMMANDS = {
    "info": "info",
    "data": "data",
    "train": "train",
    "eval": "evaluate",
    "sample": "sample",
    "metrics": "metrics",
    "bench": "bench",
    "reproduce": "reproduce",
}


def _available_commands():
  for name, module in COMMANDS.items():
    try:
      yield name, importlib.import_module(f"hrnn.cli.{module}")
    except ModuleNotFoundError as e:
      if e.name != f"hrnn.cli.{module}":
        raise


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="hrnn", description="HarmonicRNN reproducibility kit: models, data, training, sampling, metrics and "
      "the paper's notebooks. Run `hrnn COMMAND --help` for each command.")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
  for name, module in _available_commands():
    command = sub.add_parser(name, help=module.HELP, description=module.HELP,
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    module.add_arguments(command)
    command.set_defaults(_run=module.run)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    return args._run(args) or 0
  except HrnnError as e:
    print(f"hrnn {args.command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
