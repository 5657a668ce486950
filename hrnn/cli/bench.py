"""`hrnn bench`: the benchmarks (each prints one JSON object with --json). Logic lives in hrnn/bench/."""

from __future__ import annotations

from hrnn.cli import add_subcommands

HELP = ("Run a benchmark: scan kernels, step-wise sampling, training throughput and memory, the SC09 digit "
        "classifier's accuracy, or all of the accelerator checks at once (device).")

# Benchmark name -> module under hrnn.bench exposing HELP, add_arguments(parser) and run(args).
BENCHMARKS = {name: name for name in ("scan", "long_context", "sample", "train", "classifier", "device")}


def add_arguments(parser):
  add_subcommands(parser, "benchmark", "hrnn.bench", BENCHMARKS)


def run(args):
  return args._run_benchmark(args)
