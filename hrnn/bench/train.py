"""Benchmark: training throughput, compile time and peak memory of one `hrnn.train.loop` step.

The step is the real one (`hrnn.train.loop.make_train_step`: forward, backward, clipping, AdamW, EMA, dropout) on a
random batch [batch, seq_len] on the default mesh, by default with remat "block" and time chunks of 500 steps
(`ModelConfig.remat_chunk`: one chunk's activations stay in cache, and memory stays small). Reported: compile_s
(lowering + XLA compilation of the step), tokens_per_s = batch x seq_len x steps / time of `steps` steps after one
warm-up step, epochs_per_hour of SC09 (31,158 training clips of 16,000 tokens) at that rate, and peak_rss_mb, the
process's peak resident memory (compile included); tokens_per_cpu_s divides by the process's CPU time instead
(steadier on a shared machine). With several presets each runs in its own process (so peak memory is its own) and
`ratios` gives each one's speed over the last preset's, beside the paper's (Table 2, TPU).
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

import numpy as np

from hrnn import data
from hrnn.bench import peak_rss_mb
from hrnn.config import PRESETS, REMAT_POLICIES, SCAN_BACKENDS, TrainConfig, get_preset
from hrnn.paper.published import table

HELP = "Training step: tokens/s, SC09 epochs/hour, compile time and peak memory of presets."

SC09_TRAIN_CLIPS = 31_158  # SC09's training split (its two list files leave out validation and test)
# hrnn.paper.published Table 2 row label of each preset it reports.
PAPER_ROWS = {"paper": "baseline", "one-pool": "1 pool layer", "no-pool": "no pooling"}
MEMORY_LEAN = {"remat": "block", "remat_chunk": 500, "scan_backend": None}  # defaults of the memory flags


def add_arguments(parser):
  parser.add_argument("--preset", nargs="+", required=True, choices=list(PRESETS),
                      help="model preset(s); several run one after another, each in its own process")
  parser.add_argument("--batch", type=int, default=4, help="sequences per step")
  parser.add_argument("--seq-len", type=int, default=16_000, help="tokens per sequence")
  parser.add_argument("--steps", type=int, default=2, help="timed steps (after one warm-up step)")
  parser.add_argument("--remat", choices=REMAT_POLICIES, default=MEMORY_LEAN["remat"],
                      help="ModelConfig.remat: what the backward pass recomputes")
  parser.add_argument("--remat-chunk", type=int, default=MEMORY_LEAN["remat_chunk"],
                      help="ModelConfig.remat_chunk: time steps per recomputed chunk of each temporal block "
                           "(default 500, which also keeps them in cache; 0: whole sequences)")
  parser.add_argument("--scan-backend", choices=SCAN_BACKENDS, default=MEMORY_LEAN["scan_backend"],
                      help="ModelConfig.scan_backend (default: the platform's)")
  parser.add_argument("--json", action="store_true", help="print one JSON object")


def measure(preset: str, batch: int, seq_len: int, steps: int, remat: str, remat_chunk: int | None,
            scan_backend: str | None) -> dict:
  """Compiles and times the training step of `preset` in this process."""
  # The one place this module imports JAX and the trainer: `hrnn --help` imports it for its flags.
  import jax

  from hrnn.ops import scan
  from hrnn.train import loop, sharding

  model = dataclasses.replace(get_preset(preset), remat=remat, remat_chunk=remat_chunk or None,
                              scan_backend=scan_backend)
  config = TrainConfig(model=model, preset=preset, batch_size=batch, seq_len=seq_len, steps=steps + 1, epochs=None)
  mesh = loop.make_mesh(config)
  schedule = loop.learning_rate_schedule(config, steps + 1)
  optimizer = loop.make_optimizer(config, schedule)
  state = sharding.replicate(loop.init_state(config, optimizer), mesh)
  step = loop.make_train_step(loop.model_graph(config, dropout=True), config, optimizer, schedule, mesh)
  rng = np.random.default_rng(0)
  batch_arrays = sharding.place_batch({"tokens": rng.integers(0, 256, (batch, seq_len)).astype(np.int32)}, mesh,
                                      model)
  start = time.perf_counter()
  compiled = step.lower(state, batch_arrays).compile()
  compile_s = time.perf_counter() - start
  state, metrics = compiled(state, batch_arrays)  # warm-up
  jax.block_until_ready(metrics)
  start, cpu_start = time.perf_counter(), time.process_time()
  for _ in range(steps):
    state, metrics = compiled(state, batch_arrays)
  jax.block_until_ready(metrics)
  elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
  tokens_per_s = batch * seq_len * steps / elapsed
  return {
      "preset": preset, "batch": batch, "seq_len": seq_len, "steps": steps, "remat": remat, "remat_chunk": remat_chunk,
      "scan_backend": scan_backend or scan.default_backend(), "devices": jax.device_count(),
      "platform": jax.default_backend(), "compile_s": round(compile_s, 1),
      "step_s": round(elapsed / steps, 2), "tokens_per_s": round(tokens_per_s, 1),
      "tokens_per_cpu_s": round(batch * seq_len * steps / cpu, 1),
      "epochs_per_hour": round(tokens_per_s * 3600 / (SC09_TRAIN_CLIPS * data.DATASETS["sc09"].length), 4),
      "loss_bits": round(float(metrics["loss_bits"]), 4),
      "peak_rss_mb": round(peak_rss_mb(), 1),
  }


def _in_subprocess(preset: str, args) -> dict:
  command = [sys.executable, "-m", "hrnn", "bench", "train", "--preset", preset, "--batch", str(args.batch),
             "--seq-len", str(args.seq_len), "--steps", str(args.steps), "--remat", args.remat, "--json"]
  if args.scan_backend:
    command += ["--scan-backend", args.scan_backend]
  command += ["--remat-chunk", str(args.remat_chunk or 0)]
  done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
  return json.loads(done.stdout)


def compare(results: list[dict]) -> dict:
  """Each preset's epochs/hour over the last one's, here (by wall time, and by this process's CPU time, steadier on
  a shared machine) and in the paper's Table 2 (where it reports both)."""
  published = {row.label: row.values[0] for row in table("table2").rows}
  last = results[-1]
  ratios = {}
  for r in results:
    paper = None
    if r["preset"] in PAPER_ROWS and last["preset"] in PAPER_ROWS:
      paper = round(published[PAPER_ROWS[r["preset"]]] / published[PAPER_ROWS[last["preset"]]], 3)
    ratios[r["preset"]] = {"here": round(r["epochs_per_hour"] / last["epochs_per_hour"], 3),
                           "here_per_cpu_s": round(r["tokens_per_cpu_s"] / last["tokens_per_cpu_s"], 3),
                           "paper": paper}
  return {"relative_to": last["preset"], "ratios": ratios}


def run(args):
  if len(args.preset) == 1:
    result = measure(args.preset[0], args.batch, args.seq_len, args.steps, args.remat, args.remat_chunk,
                     args.scan_backend)
  else:
    runs = [_in_subprocess(preset, args) for preset in args.preset]
    result = {"runs": runs, **compare(runs)}
  if args.json:
    print(json.dumps(result))
    return
  for r in result.get("runs", [result]):
    print(f"{r['preset']:>10}: {r['tokens_per_s']:>9,.0f} tok/s  {r['epochs_per_hour']:.3f} SC09 epochs/h  "
          f"compile {r['compile_s']:.0f} s  peak RSS {r['peak_rss_mb']:,.0f} MB  "
          f"[batch {r['batch']} x {r['seq_len']}, remat {r['remat']} (chunks {r['remat_chunk']}), "
          f"scan {r['scan_backend']}]")
  for preset, ratio in result.get("ratios", {}).items():
    print(f"{preset:>10}: {ratio['here']:.2f}x {result['relative_to']} ({ratio['here_per_cpu_s']:.2f}x per CPU "
          f"second; paper: {ratio['paper']})")
