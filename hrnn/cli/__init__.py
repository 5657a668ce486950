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


def add_subcommands(parser: argparse.ArgumentParser, dest: str, package: str, modules: dict[str, str]) -> None:
  """Adds one subcommand per entry of `modules` (name -> module under `package`, each with HELP, add_arguments and
  run); the chosen one's `run` goes to `args._run_<dest>`. A module that is not installed is left out."""
  sub = parser.add_subparsers(dest=dest, metavar=dest.upper(), required=True)
  for name, module_name in modules.items():
    try:
      module = importlib.import_module(f"{package}.{module_name}")
    except ModuleNotFoundError as e:
      if e.name != f"{package}.{module_name}":
        raise
      continue
    command = sub.add_parser(name, help=module.HELP, description=module.HELP,
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    module.add_arguments(command)
    command.set_defaults(**{f"_run_{dest}": module.run})


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="hrnn", description="HarmonicRNN reproducibility kit: models, data, training, sampling, metrics and "
      "the paper's notebooks. Run `hrnn COMMAND --help` for each command.")
  add_subcommands(parser, "command", "hrnn.cli", COMMANDS)
  return parser


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    return args._run_command(args) or 0
  except HrnnError as e:
    print(f"hrnn {args.command}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
  sys.exit(main())
