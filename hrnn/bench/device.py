"""Benchmark: the accelerator check in one run (a GPU or TPU in under 8 minutes), one JSON object.

1. `tests`: the tests marked `accelerator` (tests/test_accelerator.py: the compiled Pallas kernels equal the
   float64 reference forward and backward at 2^10..2^16 steps; the step-wise model equals the parallel one), run
   by pytest in a subprocess from a checkout: passed / failed / skipped counts (skipped all: not an accelerator).
2. `scan`: `hrnn bench scan`'s measurement of each backend, forward and forward+backward, at 2^min..2^max steps
   (batch halved where the device memory is short; a backend slower than --time-limit stops growing).
3. `train`: `hrnn bench train`'s measurement of the paper train step at batch x seq-len tokens (default 32 x 16,000
   as in the paper, remat block with chunks of 500, the platform's default scan backend).
4. `sample`: `hrnn bench sample`'s generation speed at each batch (tokens/s, all streams together); a batch that
   does not fit the device is reported under `skipped`.

At tiny sizes (`--min-log2 4 --max-log2 5 --preset smoke ...`) it runs on CPU in seconds: the test suite runs it
so that it cannot rot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from hrnn.bench import sample as bench_sample
from hrnn.bench import scan as bench_scan
from hrnn.bench import train as bench_train
from hrnn.config import PRESETS, SCAN_BACKENDS

HELP = ("Accelerator check: the accelerator tests, scan backends 2^12..2^20, the paper train step and generation "
        "speed by batch, as one JSON object.")

TESTS = Path(__file__).resolve().parents[2] / "tests" / "test_accelerator.py"


def add_arguments(parser):
  parser.add_argument("--backends", default=",".join(SCAN_BACKENDS), help="comma-separated hrnn.ops.scan backends")
  parser.add_argument("--min-log2", type=int, default=12, help="shortest scan length, as a power of two")
  parser.add_argument("--max-log2", type=int, default=20, help="longest scan length, as a power of two")
  parser.add_argument("--channels", type=int, default=128, help="complex channels of the scan benchmark")
  parser.add_argument("--scan-batch", type=int, default=4, help="sequences per scan call")
  parser.add_argument("--time-limit", type=float, default=5.0,
                      help="seconds: a scan backend whose run takes longer is not tried at longer lengths")
  parser.add_argument("--preset", default="paper", help=f"model preset of train and sample: {', '.join(PRESETS)}")
  parser.add_argument("--train-batch", type=int, default=32, help="train step batch")
  parser.add_argument("--train-seq-len", type=int, default=16_000, help="train step tokens per example")
  parser.add_argument("--train-steps", type=int, default=3, help="timed train steps")
  parser.add_argument("--sample-batches", default="1,32,256,1024", help="comma-separated generation batches")
  parser.add_argument("--sample-tokens", type=int, default=3200, help="generated tokens per stream per timed run")
  parser.add_argument("--repeats", type=int, default=3, help="timed runs per scan / sample configuration")
  parser.add_argument("--no-tests", dest="tests", action="store_false", help="skip the accelerator tests")
  parser.add_argument("--json", action="store_true", help="print one JSON object (else a summary per part)")


def run_tests(path: Path = TESTS) -> dict:
  """pytest -m accelerator on `path` in a subprocess: counts of passed, failed, skipped and the exit status."""
  if not path.exists():
    return {"error": f"{path} not found: run from a checkout of hrnn"}
  with tempfile.TemporaryDirectory() as tmp:
    report = Path(tmp) / "report.xml"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:cacheprovider",
                           "-m", "accelerator", f"--junitxml={report}", "-o", "addopts=", str(path)],
                          cwd=path.parents[1], capture_output=True, text=True)
    if not report.exists():
      return {"returncode": done.returncode, "error": done.stderr[-2000:] or done.stdout[-2000:]}
    suite = ElementTree.parse(report).getroot().find("testsuite")
  counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
  failed = counts["failures"] + counts["errors"]
  result = {"returncode": done.returncode, "passed": counts["tests"] - failed - counts["skipped"],
            "failed": failed, "skipped": counts["skipped"]}
  if failed:
    result["output"] = done.stdout[-4000:]
  return result


def device_memory_gib(device) -> float | None:
  """A JAX device's memory limit in GiB (None where JAX does not report it, as on CPU)."""
  stats = device.memory_stats() or {}
  return stats["bytes_limit"] / 2**30 if "bytes_limit" in stats else None


def run_scan(args, memory_gib: float | None) -> dict:
  budget = memory_gib or 0.8 * bench_scan.available_gib()
  results, skipped, stopped = [], [], set()
  for k in range(args.min_log2, args.max_log2 + 1):
    for backend in args.backends.split(","):
      for mode in ("fwd", "fwd_bwd"):
        entry = {"backend": backend, "length": 2**k, "mode": mode}
        batch = bench_scan._fitting_batch(backend, mode, args.scan_batch, 2**k, args.channels, 0.8 * budget)
        if (backend, mode) in stopped or not batch:
          skipped.append({**entry, "reason": "slower than --time-limit at a shorter length" if batch else
                          f"does not fit {0.8 * budget:.1f} GiB"})
          continue
        result = bench_scan.measure(backend, mode, batch, 2**k, args.channels, args.repeats)
        results.append(result)
        if batch * 2**k / result["tokens_per_s"] > args.time_limit:
          stopped.add((backend, mode))
  return {"channels": args.channels, "results": results, "skipped": skipped}


def run_sample(args) -> dict:
  results, skipped = [], []
  for batch in map(int, args.sample_batches.split(",")):
    try:
      result = bench_sample.benchmark(args.preset, batch, args.sample_tokens, args.repeats, naive_tokens=0)
    except Exception as error:  # out of device memory: XlaRuntimeError RESOURCE_EXHAUSTED
      if "RESOURCE_EXHAUSTED" not in str(error):
        raise
      skipped.append({"batch": batch, "reason": "out of device memory"})
      continue
    results.append({key: result[key] for key in ("batch", "tokens", "tokens_per_s", "compile_s")})
  return {"preset": args.preset, "results": results, "skipped": skipped}


def run(args):
  # The one place this module imports JAX: `hrnn --help` imports it for its flags and must stay fast.
  import jax

  from hrnn.ops import scan

  device = jax.devices()[0]
  report = {"device": device.device_kind, "platform": device.platform, "devices": jax.device_count(),
            "jax": jax.__version__, "default_scan_backend": scan.default_backend()}
  timings = {}
  parts = [("tests", run_tests if args.tests else None), ("scan", lambda: run_scan(args, device_memory_gib(device))),
           ("train", lambda: bench_train.measure(args.preset, args.train_batch, args.train_seq_len,
                                                 args.train_steps, "block", 500, None)),
           ("sample", lambda: run_sample(args))]
  for name, part in parts:
    if part is None:
      continue
    start = time.perf_counter()
    report[name] = part()
    timings[name] = round(time.perf_counter() - start, 1)
    if not args.json:
      print(f"{name} ({timings[name]} s): {json.dumps(report[name])}", file=sys.stderr)
  report["seconds"] = timings
  report["cpu_count"] = os.cpu_count()
  print(json.dumps(report))
