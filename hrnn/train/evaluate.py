"""Test NLL in bits per sample over a whole split.

  NLL = sum_{i,t} m_it (-log2 p(x_it | x_i,<t)) / sum_{i,t} m_it

over every example of the split (each seen exactly once; padding has mask m = 0), with dropout off. Training
evaluates with the EMA weights; `hrnn eval` loads them with `hrnn.train.checkpoint.load_model`.
"""

from __future__ import annotations

import jax
from flax import nnx
from jax.sharding import Mesh
from tqdm.auto import tqdm

from hrnn import data
from hrnn.train import sharding
from hrnn.config import ModelConfig
from hrnn.model.harmonic_rnn import nll_bits


def evaluate(model: nnx.Module, ds, batch_size: int, *, seq_len: int, mesh: Mesh | None = None,
             progress: bool = False) -> float:
  """Bits per sample of `model` on every example of `ds`.

  Args:
    model: a HarmonicRNN; evaluated with dropout off (the module itself is not changed).
    ds: a split from `hrnn.data.load_split`.
    batch_size: global evaluation batch (padding rows complete the last batch; they carry mask 0).
    seq_len: tokens per example (the dataset's example length: longer examples are cut, shorter ones masked).
    mesh: device mesh with ("data", "seq") axes; None = every device along "data". With several processes each
      one reads its rows of every batch.
    progress: show a tqdm bar.
  Returns:
    The masked mean NLL in bits per sample (float).
  """
  mesh = mesh or sharding.make_mesh(data=jax.device_count(), seq=1)
  graphdef, state = nnx.split(nnx.view(model, deterministic=True))
  return split_nll(make_eval_step(graphdef, mesh), state, model.cfg, ds, batch_size, seq_len=seq_len, mesh=mesh,
                   progress=progress)


def make_eval_step(graphdef: nnx.GraphDef, mesh: Mesh):
  """The jitted (state, tokens, mask) -> (sum of bits, number of real tokens) of one batch."""

  def eval_step(state, tokens, mask):
    model = nnx.merge(graphdef, state)
    return nll_bits(sharding.sharded_logits(model, tokens, mesh), tokens, mask)

  return jax.jit(eval_step)


def split_nll(eval_step, state: nnx.State, model_config: ModelConfig, ds, batch_size: int, *, seq_len: int,
              mesh: Mesh, progress: bool = False) -> float:
  """Bits per sample over every example of `ds` with a step from `make_eval_step` and the model state."""
  state = sharding.replicate(state, mesh)
  total = count = 0.0
  shards = dict(shard_index=jax.process_index(), shard_count=jax.process_count())
  batches = data.batches(ds, batch_size, seq_len, seed=0, epoch=0, **shards)
  for batch in tqdm(batches, total=data.num_batches(ds, batch_size), desc="eval", unit="batch",
                    disable=not progress or jax.process_index() != 0, leave=False):
    batch = sharding.place_batch(batch, mesh, model_config)
    bits, n = eval_step(state, batch["tokens"], batch["mask"])
    total += float(bits)
    count += float(n)
  return total / max(count, 1.0)
