"""Structural summary of a model configuration (used by `hrnn info`, the notebooks and the tests)."""

from __future__ import annotations

import dataclasses
import functools

from flax import nnx

from hrnn.config import ModelConfig, get_preset
from hrnn.model.blocks import ResidualBlock
from hrnn.model.harmonic_rnn import HarmonicRNN, count_params
from hrnn.model.pooling import DownPool, UpPool


@functools.cache
def abstract_model(cfg: ModelConfig) -> HarmonicRNN:
  """The model with shape-only parameters (no memory, no compute): for counting, inspection and the training and
  evaluation graphs (hrnn.train.loop.model_graph). Cached per config, so shared: callers must not change it.

  Cached because tracing the constructor takes seconds (each RNG draw under eval_shape is slow in flax) and a
  notebook's runs asked for it three times per run: the parameter count and the train and eval graphs.
  """
  return nnx.eval_shape(lambda: HarmonicRNN(cfg, rngs=nnx.Rngs(0)))


def param_breakdown(model: HarmonicRNN) -> dict[str, int]:
  """Parameters per module kind: embedding, recurrent and MLP blocks, down/up pooling, final norm, head."""
  totals = {"embedding": count_params(model.embed)}
  for _, module in nnx.iter_modules(model):
    if isinstance(module, ResidualBlock):
      name = f"{module.kind}_blocks"
    elif isinstance(module, (DownPool, UpPool)):
      name = "down_pool" if isinstance(module, DownPool) else "up_pool"
    else:
      continue
    totals[name] = totals.get(name, 0) + count_params(module)
  totals["final_norm"] = count_params(model.final_norm)
  totals["head"] = count_params(model.head)
  return totals


def describe(preset: str | ModelConfig) -> dict:
  """A JSON-able description: preset, params, pool_factors, temporal_blocks, levels and parameter breakdown."""
  cfg = get_preset(preset) if isinstance(preset, str) else preset
  model = abstract_model(cfg)
  n_levels = len(cfg.pool_factors) + 1
  levels = [{"level": i, "rate": cfg.level_rates[i], "temporal_blocks": cfg.blocks[i],
             "innermost": i == n_levels - 1} for i in range(n_levels)]
  breakdown = param_breakdown(model)
  return {
      "preset": preset if isinstance(preset, str) else "custom",
      "params": sum(breakdown.values()),
      "pool_factors": list(cfg.pool_factors),
      "total_pool": cfg.total_pool,
      "temporal_blocks": cfg.temporal_blocks,
      "width": cfg.width,
      "lru_width": cfg.lru_width,
      "pool_groups": cfg.groups,
      "embedding": cfg.embedding,
      "levels": levels,
      "breakdown": breakdown,
      "config": dataclasses.asdict(cfg),
  }
