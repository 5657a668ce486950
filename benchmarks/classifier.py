"""The SC09 digit classifier on full sc09-espeak: `python benchmarks/classifier.py --json` (see hrnn/bench/classifier.py)."""

import argparse
import sys

from hrnn.bench import classifier

if __name__ == "__main__":
  parser = argparse.ArgumentParser(description=classifier.HELP)
  classifier.add_arguments(parser)
  sys.exit(classifier.run(parser.parse_args()) or 0)
