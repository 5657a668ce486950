"""HarmonicRNN model: parameter counts, causality, padding, loss, gradients; the embedding's and a U-Net level's
step forms equal their parallel forms."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from hrnn.config import PRESETS, ModelConfig, get_preset
from hrnn.model.embedding import Embedding
from hrnn.model.harmonic_rnn import (HarmonicRNN, Level, count_params, loss_bits, nll_bits, pad_to_multiple,
                                     shift_right, step_depth)
from hrnn.model.summary import abstract_model, describe

# docs/model.md, "Parameter counts" (worked there from the layer shapes).
PAPER_PARAMS = {
    "paper": 7_272_704,
    "paper-groups4": 7_391_744,
    "paper-dense": 7_760_384,
    "no-pool": 7_267_840,
    "one-pool": 7_268_608,
}


def small(preset: str) -> ModelConfig:
  """A narrow version of a preset with the same structure (pool factors, block counts, groups ratio)."""
  cfg = get_preset(preset)
  groups = None if cfg.pool_groups is None else min(cfg.pool_groups, 16)
  return dataclasses.replace(cfg, width=16, lru_width=32, gate_blocks=4, pool_groups=groups,
                             blocks=tuple(min(b, 1) or 1 for b in cfg.blocks), dropout=0.0)


@pytest.mark.parametrize("preset, expected", PAPER_PARAMS.items())
def test_paper_parameter_counts_are_exact(preset, expected):
  assert count_params(abstract_model(get_preset(preset))) == expected


def test_parameter_breakdown_matches_reference_pieces():
  info = describe("paper")
  assert info["params"] == 7_272_704
  assert info["breakdown"]["recurrent_blocks"] == 36 * 101_760
  assert info["breakdown"]["mlp_blocks"] == 36 * 99_200
  assert info["breakdown"]["down_pool"] + info["breakdown"]["up_pool"] == 4_864
  assert info["breakdown"]["final_norm"] == 256 and info["breakdown"]["head"] == 33_024
  assert info["temporal_blocks"] == 36 and info["pool_factors"] == [2, 4, 4, 5]
  assert [lvl["rate"] for lvl in info["levels"]] == [1, 2, 8, 32, 160]


def test_table2_structures():
  one, none = get_preset("one-pool"), get_preset("no-pool")
  assert one.pool_factors == (2,) and one.blocks == (12, 12) and one.temporal_blocks == 36
  assert none.pool_factors == () and none.temporal_blocks == 36


def _perturbation_batch(length: int, seed: int = 0):
  """Row 0: random tokens. Row r > 0: row 0 with token t_r changed, t_r straddling every pooling boundary."""
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 256, size=length)
  candidates = {0, 1, 2, 6, 7, 8, 30, 31, 32, 158, 159, 160, 161, 318, 319, 320, length - 2, length - 1}
  positions = sorted(t for t in candidates if 0 <= t < length)
  rows = [base]
  for t in positions:
    row = base.copy()
    row[t] = (row[t] + 1 + rng.integers(0, 254)) % 256
    rows.append(row)
  return jnp.asarray(np.stack(rows), jnp.int32), positions


@pytest.mark.parametrize("length", [320, 357])
@pytest.mark.parametrize("preset", list(PRESETS))
def test_causality_every_preset(preset, length):
  model = HarmonicRNN(get_preset(preset), rngs=nnx.Rngs(0))
  model.eval()
  tokens, positions = _perturbation_batch(length)
  logits = np.asarray(nnx.jit(lambda m, x: m(x))(model, tokens))
  assert logits.shape == (tokens.shape[0], length, 256)
  for row, t in enumerate(positions, start=1):
    # Token t is an input of positions > t only: everything up to t is bit-identical.
    np.testing.assert_array_equal(logits[row, :t + 1], logits[0, :t + 1], err_msg=f"{preset}: t={t}")
    if t + 1 < length:  # and the very next prediction does see it
      assert np.abs(logits[row, t + 1] - logits[0, t + 1]).max() > 0, f"{preset}: t={t} not used"


def test_padding_inside_model_equals_longer_input():
  cfg = small("paper")
  model = HarmonicRNN(cfg, rngs=nnx.Rngs(1))
  tokens = jax.random.randint(jax.random.key(0), (2, 400), 0, 256)
  full = model(tokens)
  for length in (1, 7, 161, 399):
    np.testing.assert_allclose(model(tokens[:, :length]), full[:, :length], atol=1e-5, rtol=1e-5)


def test_shift_right_and_pad():
  x = jnp.array([[5, 6, 7]])
  np.testing.assert_array_equal(shift_right(x), [[0, 5, 6]])
  assert pad_to_multiple(jnp.ones((1, 161, 2)), 160).shape == (1, 320, 2)
  assert pad_to_multiple(jnp.ones((1, 160, 2)), 160).shape == (1, 160, 2)


def test_nll_bits_is_masked_cross_entropy_in_bits():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 5, 256)), jnp.float32)
  tokens = jnp.asarray(rng.integers(0, 256, size=(2, 5)))
  mask = jnp.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], jnp.float32)
  total, count = nll_bits(logits, tokens, mask)
  logp = jax.nn.log_softmax(logits)
  by_hand = -sum(float(logp[b, t, tokens[b, t]]) for b in range(2) for t in range(5) if mask[b, t]) / math.log(2)
  assert float(count) == 8
  np.testing.assert_allclose(float(total), by_hand, rtol=1e-5)


def test_loss_ignores_padding():
  model = HarmonicRNN(small("paper"), rngs=nnx.Rngs(0))
  model.eval()
  tokens = jax.random.randint(jax.random.key(0), (2, 200), 0, 256)
  mask = jnp.ones((2, 200)).at[0, 150:].set(0).at[1, 90:].set(0)
  changed = tokens.at[0, 150:].set(3).at[1, 90:].set(200)
  np.testing.assert_allclose(loss_bits(model, tokens, mask), loss_bits(model, changed, mask), rtol=1e-6)
  assert not np.isclose(loss_bits(model, tokens), loss_bits(model, changed))


def test_loss_at_init_is_near_eight_bits():
  # Uniform prediction is 8 bits; unit-variance logits from the LeCun-initialised head add ~1/(2 ln 2) bits.
  model = HarmonicRNN(get_preset("paper"), rngs=nnx.Rngs(0))
  model.eval()
  tokens = jax.random.randint(jax.random.key(0), (2, 320), 0, 256)
  loss = float(nnx.jit(loss_bits)(model, tokens))
  assert abs(loss - (8 + 0.5 / math.log(2))) < 0.25, loss


@pytest.mark.parametrize("preset", ["paper", "paper-groups4", "paper-dense", "one-pool", "no-pool",
                                    "paper-linear-embed", "paper-learned-embed-dropout"])
def test_gradients_finite_and_nonzero_for_every_parameter(preset):
  cfg = dataclasses.replace(small(preset), dropout=0.2)
  model = HarmonicRNN(cfg, rngs=nnx.Rngs(0))
  model.train()
  tokens = jax.random.randint(jax.random.key(1), (2, 330), 0, 256)
  grads = nnx.grad(loss_bits)(model, tokens)
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    g = np.asarray(g)
    assert np.all(np.isfinite(g)), path
    assert np.any(g != 0), f"zero gradient for {jax.tree_util.keystr(path)}"


def test_dropout_active_in_train_mode_only():
  cfg = dataclasses.replace(small("paper"), dropout=0.5)
  model = HarmonicRNN(cfg, rngs=nnx.Rngs(0))
  tokens = jax.random.randint(jax.random.key(1), (1, 64), 0, 256)
  model.train()
  assert not np.allclose(model(tokens), model(tokens))
  model.eval()
  np.testing.assert_array_equal(model(tokens), model(tokens))


def test_jitted_paper_forward_on_one_second():
  model = HarmonicRNN(get_preset("paper"), rngs=nnx.Rngs(0))
  model.eval()
  tokens = jax.random.randint(jax.random.key(0), (1, 16_000), 0, 256)
  logits = nnx.jit(lambda m, x: m(x))(model, tokens)
  assert logits.shape == (1, 16_000, 256)
  assert np.all(np.isfinite(np.asarray(logits)))


@pytest.mark.parametrize("kind", ["sinusoidal", "linear", "learned", "learned-dropout"])
def test_embedding_step_form_equals_parallel_form(kind):
  embedding = Embedding(kind, 16, 256, 0.5, rngs=nnx.Rngs(0))
  tokens = jnp.asarray([[0, 1, 128, 255], [7, 7, 200, 3]])
  table = embedding.decode_params()  # dropout off whatever the module's mode
  assert table.shape == (256, 16)
  embedding.eval()
  for t in range(tokens.shape[1]):
    np.testing.assert_array_equal(Embedding.step(table, tokens[:, t]), embedding(tokens)[:, t])


@pytest.mark.parametrize("length", [40, 29])
def test_level_step_form_equals_parallel_form(length):
  # A two-pool U-Net level (p = 2 then 4: rates 1, 1/2, 1/8) over 40 steps; 29 ends inside both pooling windows.
  cfg = dataclasses.replace(small("paper"), pool_factors=(2, 4), blocks=(1, 1, 1))
  level = Level(cfg, 0, rngs=nnx.Rngs(0))
  level.eval()
  x = jax.random.normal(jax.random.key(1), (2, 40, 16))
  y, state = level(x, length=length)
  params = level.decode_params()
  stepped_state, outputs = Level.init_state(params, 2), []
  steps = {m: jax.jit(functools.partial(Level.step, depth=m)) for m in range(3)}
  for t in range(length):
    depth, offset = step_depth((2, 4), jnp.int32(t))
    stepped_state, y_t = steps[int(depth)](params, stepped_state, x[:, t], offset)
    outputs.append(y_t)
  np.testing.assert_allclose(jnp.stack(outputs, axis=1), y[:, :length], atol=1e-5, rtol=1e-5)
  assert jax.tree.structure(stepped_state) == jax.tree.structure(state)
  for got, want in zip(jax.tree.leaves(stepped_state), jax.tree.leaves(state)):
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
