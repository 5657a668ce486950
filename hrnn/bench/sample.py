"""Benchmark: step-wise sampling speed of a preset (random init) against a naive sampler and the FLOP bound.

One JSON object with
- tokens_per_s: generated tokens per second, all streams together, after compilation (best of --repeats runs);
  tokens_per_cpu_s: the same per second of this process's CPU time, steadier on a shared machine;
- compile_s (compile_cpu_s): compiling the sampling program; peak_rss_mb: the process's peak resident memory;
- naive_tokens_per_s: a sampler that recomputes the parallel forward over the whole (padded) prefix for every
  token, on --naive-tokens tokens;
- flops_per_token: matmul FLOPs per generated token from the model's shapes (each level weighted by its rate;
  elementwise work not counted); matmul_flops_per_s (per_cpu_s): measured on the full-rate level's matmuls at this
  batch; flop_bound_tokens_per_s (per_cpu_s): their ratio, the speed if the sampler did nothing but those matmuls;
  fraction_of_bound: tokens_per_cpu_s over flop_bound_tokens_per_cpu_s.
"""

from __future__ import annotations

import json
import os
import time

from hrnn.bench import peak_rss_mb
from hrnn.config import PRESETS, get_preset

HELP = "Step-wise sampling speed: tokens/s after compilation, compile time, memory, naive baseline, FLOP bound."


def add_arguments(parser):
  parser.add_argument("--preset", default="paper", help=f"model preset, one of: {', '.join(PRESETS)}")
  parser.add_argument("--batch", type=int, default=32, help="streams sampled together")
  parser.add_argument("--tokens", type=int, default=3200,
                      help="tokens per stream per timed run (rounded up to whole blocks of the total pool factor)")
  parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is reported")
  parser.add_argument("--naive-tokens", type=int, default=32, help="tokens for the naive baseline (0: skip it)")
  parser.add_argument("--json", action="store_true", help="print one JSON object")


def _jax():
  """(jax, jax.numpy, flax.nnx, hrnn.model.sampling, hrnn.model.harmonic_rnn): the one place this module imports
  JAX and the model, on first use, since `hrnn --help` imports it for its flags and must stay fast."""
  import jax
  import jax.numpy as jnp
  from flax import nnx

  from hrnn.model import harmonic_rnn, sampling

  return jax, jnp, nnx, sampling, harmonic_rnn


def _best_time(fn, repeats: int) -> tuple[float, float]:
  """Best wall-clock and best CPU seconds of `repeats` calls of fn (which blocks until its result is ready)."""
  wall, cpu = [], []
  for _ in range(repeats):
    w, c = time.perf_counter(), time.process_time()
    fn()
    wall.append(time.perf_counter() - w)
    cpu.append(time.process_time() - c)
  return min(wall), min(cpu)


def matmuls_per_token(params) -> list[tuple[float, int]]:
  """(uses per generated token, multiply-adds per use) of every matmul in a step: each weight of a level at rate
  1/r is used once per r tokens, a down-pool applies one of its p taps per fine step, an up-pool all p taps per
  coarse step."""
  work = [(1.0, params.head_w.size)]  # params: hrnn.model.harmonic_rnn.ModelDecode
  level, rate = params.net, 1
  while True:
    for block in level.down + (level.up or ()):
      work += [(1.0 / rate, block.in_w.size), (1.0 / rate, block.out_w.size)]
      if block.lru is not None:
        work += [(1.0 / rate, block.lru.gates_w.size), (1.0 / rate, block.lru.out_w.size)]
    if level.inner is None:
      return work
    p = level.pool.w.shape[0]
    work += [(1.0 / rate, level.pool.w.size // p), (1.0 / (rate * p), level.unpool.w.size)]
    level, rate = level.inner, rate * p


def matmul_flops_per_s(params, batch: int, repeats: int, iterations: int = 200) -> tuple[float, float]:
  """FLOP/s of the full-rate level's dense matmuls (and the head) at this batch, run as one compiled loop, per
  second of wall-clock time and per second of CPU time."""
  jax, jnp, *_ = _jax()
  level = params.net
  weights = [params.head_w]
  for block in level.down + (level.up or ()):
    weights += [block.in_w, block.out_w] + ([block.lru.out_w] if block.lru is not None else [])

  @jax.jit
  def loop(weights, xs):
    def body(xs, _):
      # Each product feeds back into its own input so that nothing is hoisted out of the loop.
      return [x + 1e-3 * jnp.tanh(x @ w)[:, :1] for x, w in zip(xs, weights)], None
    return jax.lax.scan(body, xs, None, length=iterations)[0]

  xs = [jnp.ones((batch, w.shape[0]), jnp.float32) for w in weights]
  jax.block_until_ready(loop(weights, xs))
  wall, cpu = _best_time(lambda: jax.block_until_ready(loop(weights, xs)), repeats)
  flops = 2.0 * batch * iterations * sum(w.size for w in weights)
  return flops / wall, flops / cpu


def naive_tokens_per_s(model, batch: int, n_tokens: int, repeats: int) -> float:
  """Tokens/s of sampling by the parallel forward over the prefix buffer (padded to whole blocks) per token."""
  jax, jnp, nnx, sampling, _ = _jax()
  length = -(-n_tokens // model.cfg.total_pool) * model.cfg.total_pool
  keys = jax.random.split(jax.random.key(0), batch)

  graph, weights = nnx.split(model)

  @jax.jit  # jax.jit on the split model: nnx.jit's per-call overhead would dominate a small model's forward
  def naive_step(weights, tokens, t):
    logits = jax.lax.dynamic_index_in_dim(nnx.merge(graph, weights)(tokens), t, axis=1, keepdims=False)
    token = sampling.categorical(keys, t, logits, jnp.float32(1.0))
    return jax.lax.dynamic_update_slice(tokens, token[:, None], (0, t))

  def run():
    tokens = jnp.zeros((batch, length), jnp.int32)
    for t in range(n_tokens):
      tokens = naive_step(weights, tokens, jnp.int32(t))
    jax.block_until_ready(tokens)

  naive_step(weights, jnp.zeros((batch, length), jnp.int32), jnp.int32(0)).block_until_ready()
  wall, _ = _best_time(run, repeats)
  return n_tokens * batch / wall


def benchmark(preset: str, batch: int, tokens: int, repeats: int = 3, naive_tokens: int = 32) -> dict:
  """Runs the benchmark (module docstring) and returns its JSON-able result."""
  jax, jnp, nnx, sampling, harmonic_rnn = _jax()
  load = os.getloadavg()[0]
  model = harmonic_rnn.HarmonicRNN(get_preset(preset), rngs=nnx.Rngs(0))
  model.eval()
  step_model = sampling.StepModel.from_model(model)
  total_pool = step_model.total_pool
  n_blocks = -(-tokens // total_pool)
  args = (step_model, step_model.init_state(batch), jnp.full((batch,), harmonic_rnn.START_TOKEN, jnp.int32),
          jax.random.split(jax.random.key(0), batch), jnp.float32(1.0), jnp.int32(n_blocks),
          jnp.zeros((batch, total_pool), jnp.int32), jnp.int32(0))
  wall, cpu = time.perf_counter(), time.process_time()
  compiled = sampling.sample_chunk.lower(*args, length=n_blocks * total_pool).compile()
  compile_s, compile_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
  wall, cpu = _best_time(lambda: jax.block_until_ready(compiled(*args)), repeats)
  generated = n_blocks * total_pool * batch
  flops_per_token = 2.0 * sum(uses * macs for uses, macs in matmuls_per_token(step_model.params))
  flop_rate, flop_rate_cpu = matmul_flops_per_s(step_model.params, batch, repeats)
  result = {
      "benchmark": "sample", "preset": preset, "batch": batch, "tokens": n_blocks * total_pool,
      "repeats": repeats, "tokens_per_s": generated / wall, "tokens_per_cpu_s": generated / cpu,
      "compile_s": compile_s, "compile_cpu_s": compile_cpu_s,
  }
  if naive_tokens > 0:
    naive = naive_tokens_per_s(model, batch, naive_tokens, repeats)
    result.update(naive_tokens=naive_tokens, naive_tokens_per_s=naive, speedup_vs_naive=result["tokens_per_s"] / naive)
  result.update(
      flops_per_token=flops_per_token, matmul_flops_per_s=flop_rate, matmul_flops_per_cpu_s=flop_rate_cpu,
      flop_bound_tokens_per_s=flop_rate / flops_per_token,
      flop_bound_tokens_per_cpu_s=flop_rate_cpu / flops_per_token,
      # Per CPU second: wall-clock times on a shared machine swing with the other processes' load.
      fraction_of_bound=result["tokens_per_cpu_s"] / (flop_rate_cpu / flops_per_token),
      peak_rss_mb=peak_rss_mb(),
      device=f"{jax.devices()[0].platform} ({jax.devices()[0].device_kind}, {os.cpu_count()} cores)",
      load_average=load)
  return result


def run(args):
  result = benchmark(args.preset, args.batch, args.tokens, args.repeats, args.naive_tokens)
  if args.json:
    print(json.dumps(result))
    return
  for key, value in result.items():
    print(f"{key:<24} {value:,.6g}" if isinstance(value, float) else f"{key:<24} {value}")
