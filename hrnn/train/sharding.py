"""Data and context (sequence) parallelism over a ("data", "seq") device mesh.

A token batch [B, T] is split by rows over "data" and by time over "seq". The model runs under `jax.shard_map`
as `model(tokens, seq_axis="seq")` on its local [B/data, T/seq] block; the pieces that look across a time-shard
boundary exchange what they need with the neighbouring shards:

- the input shift takes the previous shard's last token (`hrnn.model.harmonic_rnn.shift_right`, a ppermute);
- each down-pool takes the previous shard's last p - 1 frames as its halo (`hrnn.model.pooling.left_context`);
- each recurrence combines the (prod a, last state) summaries of the shards before it (`hrnn.ops.scan`).

Local lengths must be multiples of the model's total pool factor (160 for the paper), so `pad_for_mesh` right-pads
T to a multiple of seq x 160 (padding is causal: it never changes the outputs at real positions) and B to a
multiple of the data axis. `sharded_logits` does that itself and crops the logits back.

Placement: `place_batch` puts this host's batch on the mesh (padded, rows over "data", time over "seq") and
`replicate` puts weights and optimiser state on every device; both serve one or several hosts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from hrnn.config import ModelConfig
from hrnn.errors import HrnnError
from hrnn.model.harmonic_rnn import nll_bits

DATA, SEQ = "data", "seq"


class MeshError(HrnnError, ValueError):
  """The requested mesh does not fit the available devices."""


def make_mesh(data: int | None = None, seq: int = 1, *, devices=None) -> Mesh:
  """A ("data", "seq") mesh of data x seq devices (default: all of `jax.devices()`, data = count / seq)."""
  devices = list(jax.devices() if devices is None else devices)
  if data is None:
    data = len(devices) // seq
  if data < 1 or seq < 1 or data * seq > len(devices):
    raise MeshError(f"mesh data={data} x seq={seq} needs {data * seq} devices, {len(devices)} available "
                    f"(on CPU, XLA_FLAGS=--xla_force_host_platform_device_count=N gives N virtual devices)")
  return jax.make_mesh((data, seq), (DATA, SEQ), (AxisType.Auto, AxisType.Auto), devices=devices[:data * seq])


def batch_spec(ndim: int) -> P:
  """Rows over "data", time over "seq", further axes (features) replicated."""
  return P(DATA, SEQ) if ndim >= 2 else P(DATA)


def pad_for_mesh(tokens: jax.Array, mask: jax.Array | None, cfg: ModelConfig | None,
                 mesh: Mesh) -> tuple[jax.Array, jax.Array]:
  """Right-pads tokens [B, T] (and the mask, all ones when None) so that the mesh splits them into blocks the
  sharded model accepts: B to a multiple of the data axis, T (when the sequence is sharded) to a multiple of
  seq x `cfg.total_pool` (of seq alone when `cfg` is None). Padded positions get mask 0."""
  xp = np if isinstance(tokens, np.ndarray) else jnp
  if mask is None:
    mask = xp.ones(tokens.shape, xp.float32)
  data, seq = mesh.shape[DATA], mesh.shape[SEQ]
  rows = -tokens.shape[0] % data
  times = -tokens.shape[1] % (seq * (cfg.total_pool if cfg is not None else 1)) if seq > 1 else 0
  pad = ((0, rows), (0, times))
  return xp.pad(tokens, pad), xp.pad(mask, pad)


def place_batch(batch: dict[str, np.ndarray], mesh: Mesh, cfg: ModelConfig | None = None) -> dict[str, jax.Array]:
  """This host's batch {"tokens", "mask"} [B, T] as global arrays on the mesh: padded with `pad_for_mesh` (mask 0)
  to blocks the sharded model of `cfg` accepts, rows over "data", time over "seq".

  With several hosts each passes its own rows (`hrnn.data.batches(..., shard_index=jax.process_index(),
  shard_count=jax.process_count())`) and `jax.make_array_from_process_local_data` assembles the global arrays, so
  one call serves one or many hosts.
  """
  tokens, mask = pad_for_mesh(np.asarray(batch["tokens"]), batch.get("mask"), cfg, mesh)
  sharding = NamedSharding(mesh, batch_spec(2))
  return {"tokens": jax.make_array_from_process_local_data(sharding, tokens),
          "mask": jax.make_array_from_process_local_data(sharding, np.asarray(mask, np.float32))}


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of weights and optimiser state: a full copy on every device of the mesh."""
  return NamedSharding(mesh, P())


def replicate(tree, mesh: Mesh):
  """A pytree of arrays (identical on every process) as global arrays replicated over the mesh; unlike
  `jax.device_put`, this also works when the mesh spans several processes."""

  def put(x):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    return jax.make_array_from_process_local_data(replicated(mesh), np.asarray(x))

  return jax.tree.map(put, tree)


def _decorrelate_dropout(model: nnx.Module, seq_shards: int) -> None:
  """Folds this shard's index into the model's RNG keys, so that shards draw different dropout masks."""
  index = jax.lax.axis_index(DATA) * seq_shards + jax.lax.axis_index(SEQ)

  def fold(key):  # keys of stacked blocks (hrnn.model.blocks.TemporalStack) come in arrays: one fold per key
    return jax.vmap(lambda k: jax.random.fold_in(k, index))(key.reshape(-1)).reshape(key.shape)

  nnx.update(model, jax.tree.map(fold, nnx.state(model, nnx.RngKey)))


def _sharded_forward(graphdef: nnx.GraphDef, state: nnx.State, tokens: jax.Array, mesh: Mesh, check_vma: bool):
  seq_shards = mesh.shape[SEQ]

  def local(state, tokens):
    model = nnx.merge(graphdef, state, copy=True)
    _decorrelate_dropout(model, seq_shards)
    logits = model(tokens, seq_axis=SEQ if seq_shards > 1 else None)
    return logits, nnx.state(model, nnx.RngCount)  # the keys stay the caller's; only the counters advance

  return jax.shard_map(local, mesh=mesh, in_specs=(P(), batch_spec(2)), out_specs=(batch_spec(3), P()),
                       check_vma=check_vma)(state, tokens)


def sharded_logits(model: nnx.Module, tokens: jax.Array, mesh: Mesh) -> jax.Array:
  """The sequence- and data-parallel forward: logits [B, T, num_classes] equal to `model(tokens)`.

  Pads tokens [B, T] with `pad_for_mesh`, runs `model(tokens, seq_axis="seq")` on each device's block under
  `jax.shard_map` (parameters replicated) and crops the padding off. Differentiable; the model's dropout RNG
  counters advance as in an unsharded call (each shard folds its index into the keys, so masks differ).
  """
  batch, length = tokens.shape
  tokens, _ = pad_for_mesh(tokens, None, model.cfg, mesh)
  graphdef, state = nnx.split(model)
  # Pallas's CPU interpreter mistypes varying mesh axes in its loops: that backend needs unchecked shard_map.
  check_vma = model.cfg.scan_backend != "pallas"
  logits, counts = _sharded_forward(graphdef, state, tokens, mesh, check_vma)
  nnx.update(model, counts)
  return logits[:batch, :length]


def sharded_loss_bits(model: nnx.Module, tokens: jax.Array, mask: jax.Array | None, mesh: Mesh) -> jax.Array:
  """Mean NLL in bits per real token of the sharded forward: `hrnn.model.harmonic_rnn.loss_bits` over the mesh."""
  total, count = nll_bits(sharded_logits(model, tokens, mesh), tokens, mask)
  return total / jnp.maximum(count, 1.0)
