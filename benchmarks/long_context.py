"""A minute-long sequence sharded over 8 virtual CPU devices: `python benchmarks/long_context.py --json`
(see hrnn/bench/long_context.py). Needs most of a 24 GiB machine: check `free -g` first."""

import argparse
import sys

from hrnn.bench import long_context

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=long_context.HELP)
  long_context.add_arguments(parser)
  sys.exit(long_context.run(parser.parse_args()) or 0)
