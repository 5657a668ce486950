"""`hrnn bench`: the benchmarks (each prints one JSON object with --json). Logic lives in hrnn/bench/."""

from __future__ import annotations

import argparse
import importlib

HELP = ("Run a benchmark: scan kernels, step-wise sampling, training throughput and memory, or the SC09 digit "
        "classifier's accuracy.")

# Benchmark name -> module under hrnn.bench exposing HELP, add_arguments(parser) and run(args).
BENCHMARKS = ("scan", "long_context", "sample", "train", "classifier")


def _available():
  for name in BENCHMARKS:
    try:
      yield name, importlib.import_module(f"hrnn.bench.{name}")
    except ModuleNotFoundError as e:
      if e.name != f"hrnn.bench.{name}":
        raise


def add_arguments(parser):
  sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
  for name, module in _available():
    bench = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    module.add_arguments(bench)
    bench.set_defaults(_bench=module.run)


def run(args):
  return args._bench(args)
