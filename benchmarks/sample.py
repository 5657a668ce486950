"""Step-wise sampling speed: `python benchmarks/sample.py --preset paper --batch 32 --json` (see hrnn/bench/sample.py)."""

import argparse
import sys

from hrnn.bench import sample

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=sample.HELP)
  sample.add_arguments(parser)
  sys.exit(sample.run(parser.parse_args()) or 0)
