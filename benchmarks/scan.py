"""Scan kernels against memory bandwidth: `python benchmarks/scan.py --json` (see hrnn/bench/scan.py)."""

import argparse
import sys

from hrnn.bench import scan

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=scan.HELP)
  scan.add_arguments(parser)
  sys.exit(scan.run(parser.parse_args()) or 0)
