"""Benchmark: one forward+backward of a preset on a minute-long sequence, sequence-sharded over virtual devices.

The paper trains on whole YouTubeMix minutes (960,000 tokens at 16 kHz) by sharding the time axis over devices.
This runs the training gradient (mean NLL in bits and its parameter gradients) of one --tokens-long random
sequence with the time axis split over --seq devices (`hrnn.train.sharding`; on CPU, virtual devices from
XLA_FLAGS=--xla_force_host_platform_device_count, set here when JAX has not started yet), with the --remat policy
and each temporal block run over time chunks of --remat-chunk steps (`ModelConfig.remat_chunk`).

One JSON object: tokens, seq_devices, remat, remat_chunk, scan_backend, compile_s, planned_gib (XLA's buffer
plan for one step: scratch, arguments and outputs of every device, all in this process's memory on CPU) and then,
when the plan fits in --max-gib (default: 90% of MemAvailable), step_s (wall time of the compiled step), tokens_per_s,
loss_bits, grad_norm (both finite) and peak_rss_gib (this process's peak resident memory); otherwise `skipped`
says why, instead of running the machine out of memory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import numpy as np
from tqdm import tqdm

from hrnn.bench import peak_rss_mb
from hrnn.bench.scan import available_gib
from hrnn.config import PRESETS, REMAT_POLICIES, SCAN_BACKENDS, get_preset

HELP = "Forward+backward of a preset on one minute-long sequence sharded over devices: time and peak memory."


def add_arguments(parser):
  parser.add_argument("--preset", default="paper", help=f"model preset, one of: {', '.join(PRESETS)}")
  parser.add_argument("--tokens", type=int, default=960_000, help="sequence length (padded to seq x total pool)")
  parser.add_argument("--seq", type=int, default=8, help="devices along the time axis")
  parser.add_argument("--remat", default="block", choices=REMAT_POLICIES, help="rematerialisation policy")
  parser.add_argument("--remat-chunk", type=int, default=500,
                      help="ModelConfig.remat_chunk: time steps per recomputed chunk of each temporal block "
                           "(default 500; 0: whole sequences)")
  parser.add_argument("--scan-backend", choices=SCAN_BACKENDS, help="hrnn.ops.scan backend (default: the platform's)")
  parser.add_argument("--max-gib", type=float, default=None,
                      help="run the step only if XLA's plan fits in this (default: 90%% of MemAvailable)")
  parser.add_argument("--json", action="store_true", help="print one JSON object")


def _ensure_virtual_devices(count: int) -> None:
  """On CPU, ask XLA for `count` virtual devices (only effective before JAX initialises its backend)."""
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={count}".strip()


def run(args):
  _ensure_virtual_devices(args.seq)
  # JAX reads XLA_FLAGS when first imported, so its modules are imported here, after the virtual devices are set
  # (this also keeps `hrnn --help`, which imports this module for its flags, free of JAX).
  import jax
  import optax
  from flax import nnx

  from hrnn.train import sharding
  from hrnn.model.harmonic_rnn import HarmonicRNN
  from hrnn.train.loop import compiler_options

  cfg = dataclasses.replace(get_preset(args.preset), remat=args.remat, remat_chunk=args.remat_chunk or None,
                            scan_backend=args.scan_backend)
  mesh = sharding.make_mesh(data=1, seq=args.seq)
  progress = tqdm(total=3, desc="long context", unit="phase")
  model = HarmonicRNN(cfg, rngs=nnx.Rngs(0))
  model.eval()  # dropout off: the step is a deterministic function of the parameters
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tokens = np.random.default_rng(0).integers(0, cfg.num_classes, (1, args.tokens)).astype(np.int32)
  batch = sharding.place_batch({"tokens": tokens}, mesh, cfg)  # padding (if any) has mask 0

  def loss(params, tokens, mask):
    return sharding.sharded_loss_bits(nnx.merge(graphdef, params, rest, copy=True), tokens, mask, mesh)

  step = jax.jit(jax.value_and_grad(loss), compiler_options=compiler_options(cfg))
  progress.update()
  start = time.perf_counter()
  compiled = step.lower(params, batch["tokens"], batch["mask"]).compile()
  compile_s = time.perf_counter() - start
  progress.update()
  memory = compiled.memory_analysis()  # per device
  planned_gib = args.seq * (memory.temp_size_in_bytes + memory.argument_size_in_bytes
                            + memory.output_size_in_bytes) / 2**30
  limit_gib = args.max_gib if args.max_gib is not None else 0.9 * available_gib()
  report = {"preset": args.preset, "tokens": args.tokens, "seq_devices": args.seq, "remat": cfg.remat,
            "remat_chunk": cfg.remat_chunk,
            "scan_backend": cfg.scan_backend or "default", "compile_s": round(compile_s, 1),
            "planned_gib": round(planned_gib, 2)}
  if planned_gib > limit_gib:
    report["skipped"] = f"the step's buffers ({planned_gib:.1f} GiB) exceed {limit_gib:.1f} GiB"
  else:
    start = time.perf_counter()
    bits, grads = jax.block_until_ready(compiled(params, batch["tokens"], batch["mask"]))
    step_s = time.perf_counter() - start
    report.update(step_s=round(step_s, 1), tokens_per_s=round(args.tokens / step_s),
                  loss_bits=round(float(bits), 4), grad_norm=round(float(optax.global_norm(grads)), 4),
                  peak_rss_gib=round(peak_rss_mb() / 1024, 2))
  progress.update()
  progress.close()
  if args.json:
    print(json.dumps(report))
  else:
    for key, value in report.items():
      print(f"{key:<14} {value}")
