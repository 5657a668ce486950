"""The `hrnn` command line. Each subcommand lives in its own module under `hrnn/cli/` with

  HELP: str                     one line for `hrnn --help`
  add_arguments(parser)         its flags (cheap: no JAX import)
  run(args) -> int | None       the work (imports what it needs)

so that `hrnn --help` stays fast and every subcommand has its own `--help`.

Errors: a failure the user can cause ends in one line `hrnn COMMAND: error: ...` naming the culprit and what to
do, and exit status 2: a bad flag value (argparse, with the types below), an `HrnnError`, or an `OSError` of the
file system (no space, permission denied, read-only, a file where a folder belongs...) naming its path. Any other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import errno
import functools
import importlib
import math
import sys
import warnings

from hrnn.errors import HrnnError, HrnnWarning

# File-system errors the user causes (and can fix): errno -> what to do.
FILESYSTEM_ERRORS = {
    errno.ENOSPC: "no space left on the device: free some space or choose another location, then run again",
    errno.EDQUOT: "disk quota exceeded: free some space or choose another location, then run again",
    errno.EROFS: "read-only file system: choose a writable location",
    errno.EACCES: "permission denied: choose a location you may write (or read), or fix its permissions",
    errno.EPERM: "operation not permitted: choose another location, or fix its permissions",
    errno.ENOTDIR: "a path component is a file, not a folder: choose another location",
    errno.EEXIST: "exists and is not a folder: choose another location or move it away",
    errno.EISDIR: "is a folder, not a file: name a file",
    errno.ENOENT: "no such file or folder",
    errno.ENAMETOOLONG: "file name too long",
}

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


def finite_float(text: str) -> float:
  """argparse type: a float that is neither NaN nor infinite."""
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
  if not math.isfinite(value):
    raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
  return value


def positive_float(text: str) -> float:
  """argparse type: a finite float > 0."""
  value = finite_float(text)
  if value <= 0:
    raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
  return value


def positive_int(text: str) -> int:
  """argparse type: an integer >= 1."""
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
  if value < 1:
    raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
  return value


def filesystem_message(e: OSError) -> str | None:
  """One line for a file-system error the user can fix, naming its path(s); None for other OSErrors."""
  advice = FILESYSTEM_ERRORS.get(e.errno)
  if advice is None:
    return None
  paths = " -> ".join(str(p) for p in (e.filename, e.filename2) if p is not None)
  return f"{paths}: {advice}" if paths else f"{advice} ({e.strerror or e})"


def _format_warning(command, message, category, filename, lineno, line=None, *, default=warnings.formatwarning):
  """HrnnWarnings as one line `hrnn COMMAND: warning: ...` (no source line); other warnings as Python shows them."""
  if issubclass(category, HrnnWarning):
    return f"hrnn {command}: warning: {message}\n"
  return default(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  previous, warnings.formatwarning = warnings.formatwarning, functools.partial(_format_warning, args.command)
  try:
    return args._run_command(args) or 0
  except HrnnError as e:
    print(f"hrnn {args.command}: error: {e}", file=sys.stderr)
    return 2
  except OSError as e:
    message = filesystem_message(e)
    if message is None:
      raise
    print(f"hrnn {args.command}: error: {message}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    return 130
  finally:
    warnings.formatwarning = previous


if __name__ == "__main__":
  sys.exit(main())
