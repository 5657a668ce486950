"""Benchmark: throughput of every `hrnn.ops.scan` backend against the machine's memory bandwidth.

For each backend, length 2^k (k from --min-log2 to --max-log2), mode `fwd` (h, h_last from a, b) and `fwd_bwd`
(the same and the cotangents of a and b), complex64 inputs [batch, length, channels] with |a| = 0.999:
tokens_per_s = batch x length / best time after compilation (tokens_per_cpu_s: per second of this process's CPU
time, steadier on a shared machine).

The limit beside them: bandwidth_GBps is a large numpy copy into memory already touched (bytes read + written
per second); bandwidth_bound_tokens_per_s is that divided by the bytes a pass must move per token: reading a, b
and writing h (3 arrays) for fwd, plus reading a, h, dh and writing da, db (8 arrays in all) for fwd_bwd.

Arrays at 2^20 x batch 4 x 128 channels are 4 GiB each: a configuration whose working set would not fit in
--memory-gib runs at a smaller batch (reported per result); a backend whose timed run exceeds --time-limit stops
growing its length. Both are listed under `skipped`. `summary` compares the platform's default backend at the
longest length with the bandwidth bound, and with `associative` at the longest length both ran.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
from tqdm import tqdm

HELP = "Scan kernels: tokens/s of each backend (forward, forward+backward) by length, against memory bandwidth."

# Memory of a configuration in [batch, length, channels] arrays: XLA's arguments + outputs + scratch of each
# program (compiled.memory_analysis() at 2^14 steps), plus one for headroom.
_WORKING_SET = {"fwd": {"linear": 4, "associative": 8, "chunked": 4, "pallas": 7},
                "fwd_bwd": {"linear": 8, "associative": 14, "chunked": 7, "pallas": 10}}
_ARRAYS_MOVED = {"fwd": 3, "fwd_bwd": 8}


def add_arguments(parser):
  parser.add_argument("--backends", default="linear,associative,chunked,pallas",
                      help="comma-separated hrnn.ops.scan backends")
  parser.add_argument("--min-log2", type=int, default=10, help="shortest length, as a power of two")
  parser.add_argument("--max-log2", type=int, default=20, help="longest length, as a power of two")
  parser.add_argument("--batch", type=int, default=4, help="sequences per call (reduced where memory is short)")
  parser.add_argument("--channels", type=int, default=128, help="complex channels")
  parser.add_argument("--repeats", type=int, default=3, help="timed runs per configuration; the best is kept")
  parser.add_argument("--memory-gib", type=float, default=None,
                      help="memory the arrays of one configuration may use (default: 80%% of MemAvailable then)")
  parser.add_argument("--time-limit", type=float, default=60.0,
                      help="seconds: a backend whose run takes longer is not tried at longer lengths")
  parser.add_argument("--json", action="store_true", help="print one JSON object")


def _jax():
  """(jax, jax.numpy, hrnn.ops.scan): the one place this module imports JAX, on first use, since `hrnn --help`
  imports it for its flags and must stay fast."""
  import jax
  import jax.numpy as jnp

  from hrnn.ops import scan

  return jax, jnp, scan


def available_gib() -> float:
  """MemAvailable from /proc/meminfo in GiB (Linux)."""
  with open("/proc/meminfo") as f:
    for line in f:
      if line.startswith("MemAvailable:"):
        return int(line.split()[1]) / 2**20
  raise OSError("MemAvailable not found in /proc/meminfo")


def copy_bandwidth_gbps(megabytes: int = 256, repeats: int = 5) -> float:
  """Bytes read + written per second by a large copy between buffers already in memory (best of `repeats`)."""
  src = np.ones(megabytes * 2**20 // 4, np.float32)
  dst = np.zeros_like(src)
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    np.copyto(dst, src)
    best = min(best, time.perf_counter() - start)
  return 2 * src.nbytes / best / 1e9


def _inputs(batch: int, length: int, channels: int):
  """complex64 [batch, length, channels]: a = 0.999 e^{i phase} and unit-modulus b, deterministic phases made on
  the device (no host copies of multi-GiB arrays; the values do not change the speed)."""
  jax, jnp, _ = _jax()
  shape = (batch, length, channels)

  @jax.jit
  def make():
    n, t, c = (jax.lax.broadcasted_iota(jnp.float32, shape, axis) for axis in range(3))
    a = 0.999 * jnp.exp(1j * (0.01 * t + 0.1 * c))
    b = jnp.exp(1j * (0.37 * t + 1.3 * c + 0.7 * n))
    return a.astype(jnp.complex64), b.astype(jnp.complex64)

  return make()


def _program(backend: str, mode: str):
  jax, _, ops = _jax()

  def forward(a, b):
    return ops.linear_recurrence(a, b, backend=backend)

  if mode == "fwd":
    return jax.jit(forward)

  def forward_backward(a, b):
    out, vjp = jax.vjp(forward, a, b)
    return out, vjp((b, b[:, -1]))  # any cotangent of the same shape does: b stands in for dh

  return jax.jit(forward_backward)


def measure(backend: str, mode: str, batch: int, length: int, channels: int, repeats: int) -> dict:
  """One configuration: compile time, best wall and CPU seconds of `repeats` runs."""
  jax, *_ = _jax()
  a, b = _inputs(batch, length, channels)
  start = time.perf_counter()
  program = _program(backend, mode).lower(a, b).compile()
  compile_s = time.perf_counter() - start
  jax.block_until_ready(program(a, b))
  wall, cpu = float("inf"), float("inf")
  for _ in range(repeats):
    w, c = time.perf_counter(), time.process_time()
    jax.block_until_ready(program(a, b))
    wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
  tokens = batch * length
  return {"backend": backend, "length": length, "mode": mode, "tokens_per_s": round(tokens / wall),
          "tokens_per_cpu_s": round(tokens / cpu), "batch": batch, "compile_s": round(compile_s, 2)}


def _fitting_batch(backend: str, mode: str, batch: int, length: int, channels: int, budget_gib: float) -> int:
  """The largest batch <= `batch` (halving) whose working set fits the budget; 0 if not even 1 does."""
  array_gib = length * channels * 8 / 2**30
  while batch and _WORKING_SET[mode][backend] * batch * array_gib > budget_gib:
    batch //= 2
  return batch


def _summary(results: list[dict], bound: dict[str, float]) -> dict:
  """The default backend against the bandwidth bound at its longest length, and against `associative` at the
  longest length both ran, per mode; by wall time and by CPU time (steadier on a shared machine)."""
  default = _jax()[2].default_backend()
  summary = {"default_backend": default}
  for mode in ("fwd", "fwd_bwd"):
    runs = {(r["backend"], r["length"]): r for r in results if r["mode"] == mode}
    lengths = [length for backend, length in runs if backend == default]
    if not lengths:
      continue
    best = runs[default, max(lengths)]
    summary[mode] = {"length": best["length"],
                     "bound_over_default": round(bound[mode] / best["tokens_per_s"], 2),
                     "bound_over_default_cpu": round(bound[mode] / best["tokens_per_cpu_s"], 2)}
    shared = [length for length in lengths if ("associative", length) in runs]
    if shared:
      mine, theirs = runs[default, max(shared)], runs["associative", max(shared)]
      summary[mode].update(associative_length=max(shared),
                           default_over_associative=round(mine["tokens_per_s"] / theirs["tokens_per_s"], 2),
                           default_over_associative_cpu=round(mine["tokens_per_cpu_s"] / theirs["tokens_per_cpu_s"], 2))
  return summary


def run(args):
  backends = args.backends.split(",")
  bandwidth = copy_bandwidth_gbps()
  bound = {mode: bandwidth * 1e9 / (n * args.channels * 8) for mode, n in _ARRAYS_MOVED.items()}
  results, skipped, stopped = [], [], set()
  configs = [(backend, mode, 2**k) for k in range(args.min_log2, args.max_log2 + 1)
             for backend in backends for mode in ("fwd", "fwd_bwd")]
  for backend, mode, length in tqdm(configs, desc="scan bench"):
    entry = {"backend": backend, "length": length, "mode": mode}
    if (backend, mode) in stopped:
      skipped.append({**entry, "reason": f"a shorter length took over {args.time_limit:g} s"})
      continue
    budget = args.memory_gib if args.memory_gib is not None else 0.8 * available_gib()  # others' use varies
    batch = _fitting_batch(backend, mode, args.batch, length, args.channels, budget)
    if not batch:
      skipped.append({**entry, "reason": f"does not fit {budget:.1f} GiB even at batch 1"})
      continue
    result = measure(backend, mode, batch, length, args.channels, args.repeats)
    result["bandwidth_bound_tokens_per_s"] = round(bound[mode])
    results.append(result)
    if batch * length / result["tokens_per_s"] > args.time_limit:
      stopped.add((backend, mode))
  report = {"bandwidth_GBps": round(bandwidth, 2), "channels": args.channels, "cpu_count": os.cpu_count(),
            "results": results, "skipped": skipped,
            "summary": _summary(results, bound)}
  if args.json:
    print(json.dumps(report))
    return
  print(f"copy bandwidth {report['bandwidth_GBps']} GB/s; bound fwd {bound['fwd']:,.0f} tokens/s, "
        f"fwd_bwd {bound['fwd_bwd']:,.0f} tokens/s ({args.channels} complex channels)")
  print(f"{'backend':<12} {'mode':<8} {'length':>8} {'batch':>5} {'tokens/s':>12} {'tokens/cpu-s':>13} {'compile s':>9}")
  for r in results:
    print(f"{r['backend']:<12} {r['mode']:<8} {r['length']:>8} {r['batch']:>5} {r['tokens_per_s']:>12,} "
          f"{r['tokens_per_cpu_s']:>13,} {r['compile_s']:>9}")
  for s in skipped:
    print(f"skipped {s['backend']} {s['mode']} {s['length']}: {s['reason']}")
  print("summary:", json.dumps(report["summary"]))
