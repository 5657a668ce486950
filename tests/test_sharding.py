"""hrnn.train.sharding: meshes, batch placement and padding, and the context-parallel model (with remat policies)
against the unsharded model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from hrnn.train import sharding
from hrnn.config import ConfigError, ModelConfig, get_preset
from hrnn.errors import HrnnError
from hrnn.model.harmonic_rnn import HarmonicRNN, loss_bits
from hrnn.train.loop import compiler_options

# Paper-structured (pool factors 2, 4, 4, 5; CG-LRU and MLP blocks; depthwise pooling), narrow and shallow: one
# temporal block on each path of the outer level and in the innermost stack.
TINY = dataclasses.replace(get_preset("smoke"), width=8, lru_width=8, gate_blocks=2, blocks=(1, 0, 0, 0, 1))


def relative(x, ref):
  return float(jnp.linalg.norm(jnp.ravel(x - ref)) / jnp.linalg.norm(jnp.ravel(ref)))


def test_make_mesh():
  mesh = sharding.make_mesh(data=2, seq=4)
  assert mesh.axis_names == ("data", "seq") and dict(mesh.shape) == {"data": 2, "seq": 4}
  assert dict(sharding.make_mesh(seq=2).shape) == {"data": 4, "seq": 2}  # the rest of the 8 devices on data
  with pytest.raises(HrnnError, match="needs 16 devices, 8 available"):
    sharding.make_mesh(data=4, seq=4)


def test_pad_for_mesh():
  mesh = sharding.make_mesh(data=2, seq=4)
  tokens = np.arange(3 * 700).reshape(3, 700) % 256
  padded, mask = sharding.pad_for_mesh(tokens, None, TINY, mesh)
  assert isinstance(padded, np.ndarray) and padded.shape == mask.shape == (4, 1280)  # rows to 2k, time to 4 x 160 k
  np.testing.assert_array_equal(padded[:3, :700], tokens)
  assert mask.sum() == 3 * 700 and mask[:3, :700].all() and not padded[3].any() and not padded[:, 700:].any()
  # unsharded time: only the rows are padded (the model pads time itself)
  padded, mask = sharding.pad_for_mesh(jnp.asarray(tokens), jnp.ones((3, 700)), TINY, sharding.make_mesh(2, 1))
  assert padded.shape == (4, 700) and float(mask.sum()) == 3 * 700


def test_place_batch():
  mesh = sharding.make_mesh(data=2, seq=4)
  batch = {"tokens": np.arange(4 * 640, dtype=np.int32).reshape(4, 640), "mask": np.ones((4, 640), np.float32)}
  placed = sharding.place_batch(batch, mesh)
  for key, value in placed.items():
    assert value.sharding.spec == P("data", "seq") and len(value.addressable_shards) == 8
    assert value.addressable_shards[0].data.shape == (2, 160)  # rows 0-1, steps 0-159
    np.testing.assert_array_equal(value, batch[key])
  # 3 rows of 700 steps, no mask: padded to 4 rows (the data axis) and 1,280 steps (4 shards x 160, TINY's total
  # pool) with mask 0; without a model, time only to a multiple of the 4 shards (700 already is).
  tokens = (np.arange(3 * 700).reshape(3, 700) % 256).astype(np.int32)
  placed = sharding.place_batch({"tokens": tokens}, mesh, TINY)
  assert placed["tokens"].shape == placed["mask"].shape == (4, 1280)
  mask = np.asarray(placed["mask"])
  assert mask.sum() == 3 * 700 and mask[:3, :700].all()
  np.testing.assert_array_equal(np.asarray(placed["tokens"])[:3, :700], tokens)
  assert sharding.place_batch({"tokens": tokens}, mesh)["tokens"].shape == (4, 700)


def test_replicate_puts_a_copy_on_every_device():
  mesh = sharding.make_mesh(data=2, seq=4)
  tree = {"w": np.arange(6.0).reshape(2, 3), "key": jax.random.key(3)}
  placed = sharding.replicate(tree, mesh)
  for leaf in jax.tree.leaves(placed):
    assert leaf.sharding == sharding.replicated(mesh) and len(leaf.addressable_shards) == 8
  np.testing.assert_array_equal(placed["w"].addressable_shards[7].data, tree["w"])
  assert jax.random.key_data(placed["key"]).tolist() == jax.random.key_data(tree["key"]).tolist()


def test_remat_config():
  assert ModelConfig(remat=True).remat == "block" and ModelConfig(remat=False).remat == "none"
  with pytest.raises(ConfigError, match="remat"):
    ModelConfig(remat="everything")
  with pytest.raises(ConfigError, match="scan_backend"):
    ModelConfig(scan_backend="fft")


def logits_and_grads(cfg, tokens, mask, mesh=None):
  """Logits and parameter gradients of the mean NLL, unsharded (mesh None) or through hrnn.train.sharding."""
  model = HarmonicRNN(cfg, rngs=nnx.Rngs(0))
  model.eval()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)

  def loss(params):
    model = nnx.merge(graphdef, params, rest, copy=True)
    if mesh is None:
      return loss_bits(model, tokens, mask), model(tokens)
    return sharding.sharded_loss_bits(model, tokens, mask, mesh), sharding.sharded_logits(model, tokens, mesh)

  step = jax.jit(jax.value_and_grad(loss, has_aux=True), compiler_options=compiler_options(cfg))
  (_, logits), grads = step(params)
  return logits, grads


def sharding_inputs():
  # 3 rows of 1,200 tokens: padded to the mesh inside (rows to the data axis, time to seq x 160), cropped back.
  rng = np.random.default_rng(0)
  tokens = jnp.asarray(rng.integers(0, 256, (3, 1200)), jnp.int32)
  mask = jnp.asarray(rng.uniform(size=(3, 1200)) < 0.9, jnp.float32)
  return tokens, mask


def check_sharded_equals_unsharded(cfg, layouts, reference=None):
  """Each layout's logits and gradients against the unsharded model's (`reference`: those, when already known)."""
  tokens, mask = sharding_inputs()
  want_logits, want_grads = reference if reference is not None else logits_and_grads(cfg, tokens, mask)
  for (data, seq), remat, *chunk in layouts:
    mesh = sharding.make_mesh(data=data, seq=seq)
    layout_cfg = dataclasses.replace(cfg, remat=remat, remat_chunk=chunk[0] if chunk else None)
    logits, grads = logits_and_grads(layout_cfg, tokens, mask, mesh)
    assert logits.shape == want_logits.shape == (3, 1200, 256)
    assert relative(logits, want_logits) <= 1e-5, (data, seq, remat, chunk)
    for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads)):
      assert relative(got, want) <= 1e-4, (data, seq, remat, chunk)


@pytest.fixture(scope="module")
def tiny_unsharded():
  """The unsharded TINY model's logits and gradients, computed once for every layout below."""
  return logits_and_grads(TINY, *sharding_inputs())


# Sequence sharded 2, 4 (with 2-way data sharding) and 8 ways (local inner-level lengths down to 1 step); each
# layout with another remat policy, which must not change the function either. The last two run each shard's
# blocks in time chunks (local level-0 lengths 640 and 320: chunks of 100, the last padded, and of 64), the
# CG-LRU state entering each shard gathered from the others' chunk summaries. One test per layout: each compiles
# its own sharded step, and the layouts spread over the test workers.
@pytest.mark.parametrize("layout", [((1, 2), "recurrence"), ((2, 4), "block"), ((1, 8), "stack"),
                                    ((1, 2), "block", 100), ((2, 4), "stack", 64)],
                         ids=lambda layout: "x".join(map(str, layout[0])) + "-" + "-".join(map(str, layout[1:])))
def test_sharded_equals_unsharded(layout, tiny_unsharded):
  check_sharded_equals_unsharded(TINY, [layout], reference=tiny_unsharded)


@pytest.mark.slow
def test_sharded_equals_unsharded_smoke_preset():
  # Every level with its blocks (the smoke preset), every layout.
  check_sharded_equals_unsharded(get_preset("smoke"), [((1, 2), "none"), ((1, 4), "none"), ((1, 8), "none"),
                                                       ((2, 4), "block")])


def test_dropout_counters_advance_as_unsharded():
  cfg = dataclasses.replace(TINY, dropout=0.5)
  tokens = jnp.zeros((2, 320), jnp.int32)
  counts = []
  for mesh in (None, sharding.make_mesh(data=1, seq=2)):
    model = HarmonicRNN(cfg, rngs=nnx.Rngs(0))
    forward = (lambda m, x: m(x)) if mesh is None else (lambda m, x: sharding.sharded_logits(m, x, mesh))
    assert nnx.jit(forward)(model, tokens).shape == (2, 320, 256)
    counts.append([int(c) for leaf in jax.tree.leaves(nnx.state(model, nnx.RngCount)) for c in np.ravel(leaf)])
  assert counts[0] == counts[1] and max(counts[0]) > 0


def test_remat_policies_save_memory():
  # Compiled activation memory of a gradient at the paper's widths, 2 temporal blocks, 3,200 tokens: each policy
  # stores less (with train.compiler_options, without which XLA on CPU undoes remat).
  tokens = jnp.zeros((1, 3200), jnp.int32)
  temp = {}
  for remat in ("none", "recurrence", "block"):
    cfg = dataclasses.replace(get_preset("paper"), blocks=(2, 0, 0, 0, 0), remat=remat)
    model = HarmonicRNN(cfg, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    grad = jax.grad(lambda p: loss_bits(nnx.merge(graphdef, p, rest, copy=True), tokens))
    compiled = jax.jit(grad, compiler_options=compiler_options(cfg)).lower(params).compile()
    temp[remat] = compiled.memory_analysis().temp_size_in_bytes
  assert temp["none"] > 1.2 * temp["recurrence"] > 1.2 * 1.2 * temp["block"], temp
