"""Training step throughput, compile time and peak memory: `python benchmarks/train.py --preset paper --json`
(see hrnn/bench/train.py). The paper preset at batch 4 x 16,000 needs several GiB: check `free -g` first."""

import argparse
import sys

from hrnn.bench import train

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=train.HELP)
  train.add_arguments(parser)
  sys.exit(train.run(parser.parse_args()) or 0)
