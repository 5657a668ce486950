"""Shared by test_train, test_checkpoint and test_evaluate: a tiny dataset, a tiny run config, a compile cache.

Every test trains the same program (same model, batch, length and hyperparameters; only the number of steps and
the bookkeeping differ), so with the persistent compilation cache it is compiled once for all of them, including
the training subprocesses.
"""

import dataclasses

import jax
import numpy as np
import pytest

from hrnn import data
from hrnn.config import TrainConfig, get_preset
from hrnn.train.loop import read_metrics  # noqa: F401  (the tests read the log through it)

# The smoke preset with dropout on, so that resuming must also reproduce the dropout masks.
MODEL = dataclasses.replace(get_preset("smoke"), dropout=0.1)
# For tests of single steps (and the multi-process run): one pooling level, three temporal blocks, no dropout.
TINY_MODEL = dataclasses.replace(MODEL, width=8, lru_width=8, gate_blocks=2, pool_factors=(2,), blocks=(1, 1),
                                 dropout=0.0)
ITEMS = ("counters", "params", "ema", "opt_state", "rngs")


def run_config(data_root, **overrides) -> TrainConfig:
  """8 x 800-token batches of sc09-espeak (small) on one device; a high learning rate so that the loss falls
  within seconds."""
  values = dict(model=MODEL, preset="smoke", dataset="sc09-espeak", data_root=str(data_root), batch_size=8,
                seq_len=800, steps=8, epochs=None, learning_rate=0.01, warmup_steps=2, checkpoint_every=4,
                log_every=1, eval_batch_size=8, mesh_data=1)
  return TrainConfig(**{**values, **overrides})


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  data.prepare("sc09-espeak", size="small", root=root)
  return root


@pytest.fixture(scope="session")
def compile_cache(tmp_path_factory):
  """A persistent XLA cache shared by the test workers and their subprocesses; the previous setting is restored."""
  directory = tmp_path_factory.getbasetemp().parent / "hrnn-train-jax-cache"
  previous = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update("jax_compilation_cache_dir", str(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  yield directory
  jax.config.update("jax_compilation_cache_dir", previous[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", previous[1])


def checkpoint_arrays(workdir, step: int) -> dict[str, list[np.ndarray]]:
  """Every array of checkpoint `step` as numpy (PRNG keys as their key data), per item, read onto one device
  whatever the devices that wrote it."""
  from hrnn.train import loop
  from hrnn.train.checkpoint import Checkpoints, read_config

  config = read_config(workdir)
  optimizer = loop.make_optimizer(config, loop.learning_rate_schedule(config, 1))
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                          jax.eval_shape(lambda: loop.init_state(config, optimizer).items()))
  checkpoints = Checkpoints(workdir)
  items, _ = checkpoints.restore(abstract, step)
  checkpoints.close()
  as_numpy = lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                                  else x)
  return {name: [as_numpy(x) for x in jax.tree.leaves(items[name])] for name in ITEMS}


def assert_bit_identical(a: dict[str, list[np.ndarray]], b: dict[str, list[np.ndarray]]) -> None:
  for name in ITEMS:
    assert len(a[name]) == len(b[name]) > 0, name
    for i, (x, y) in enumerate(zip(a[name], b[name])):
      assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), f"{name} leaf {i} differs"


def saved_run(workdir, config: TrainConfig, step: int = 0, steps_per_epoch: int = 40):
  """A work directory holding `config` and one checkpoint of its initial state at `step`, with EMA weights set
  to half the parameters (so that EMA and raw weights differ), written without training. Returns the state."""
  from hrnn.train import loop
  from hrnn.train.checkpoint import Checkpoints, write_config

  state = loop.init_state(config, loop.make_optimizer(config, loop.learning_rate_schedule(config, 10)))
  state = state.replace(ema=jax.tree.map(lambda p: p * 0.5, state.params))
  workdir.mkdir(parents=True, exist_ok=True)
  write_config(workdir, config)
  checkpoints = Checkpoints(workdir)
  checkpoints.save(step, state.items(), loop.checkpoint_meta(config, step, steps_per_epoch))
  checkpoints.close()
  return state
