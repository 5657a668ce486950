"""Test NLL in bits per sample over a whole split (reference.md section 4).

  NLL = sum_{i,t} m_it (-log2 p(x_it | x_i,<t)) / sum_{i,t} m_it

over every example of the split (each seen exactly once; padding has mask m = 0), with dropout off. Training
evaluates with the EMA weights; `hrnn eval` loads them with `hrnn.checkpoint.load_model`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from hrnn import data, sharding
from hrnn.config import ModelConfig
from hrnn.model import nll_bits


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
  state = replicate(state, mesh)
  total = count = 0.0
  shards = dict(shard_index=jax.process_index(), shard_count=jax.process_count())
  batches = data.batches(ds, batch_size, seq_len, seed=0, epoch=0, **shards)
  for batch in tqdm(batches, total=data.num_batches(ds, batch_size), desc="eval", unit="batch",
                    disable=not progress or jax.process_index() != 0, leave=False):
    batch = to_mesh(batch, model_config, mesh)
    bits, n = eval_step(state, batch["tokens"], batch["mask"])
    total += float(bits)
    count += float(n)
  return total / max(count, 1.0)


def to_mesh(batch: dict[str, np.ndarray], model_config: ModelConfig, mesh: Mesh) -> dict[str, jax.Array]:
  """This host's batch {"tokens", "mask"} [B, T] as global arrays on the mesh, padded (mask 0) to the block
  sizes the sharded model accepts (`hrnn.sharding.pad_for_mesh`)."""
  tokens, mask = sharding.pad_for_mesh(batch["tokens"], batch["mask"], model_config, mesh)
  return sharding.shard_batch({"tokens": tokens, "mask": mask}, mesh)


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of weights and optimiser state: a full copy on every device of the mesh."""
  return NamedSharding(mesh, PartitionSpec())


def replicate(tree, mesh: Mesh):
  """A pytree of arrays (identical on every process) as global arrays replicated over the mesh; unlike
  `jax.device_put`, this also works when the mesh spans several processes."""

  def put(x):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    return jax.make_array_from_process_local_data(replicated(mesh), np.asarray(x))

  return jax.tree.map(put, tree)
