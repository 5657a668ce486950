"""Training: the loss falls, SIGKILL-and-resume is bit-identical, bad updates are skipped and counted,
one code path for one device and a mesh, several processes."""

import dataclasses
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd
import pytest
from flax import nnx

from hrnn import data
from hrnn.train import sharding
from hrnn.train import loop
from hrnn.model import summary
from hrnn.config import ConfigError
from train_fixtures import (MODEL, TINY_MODEL, assert_bit_identical, checkpoint_arrays, compile_cache,  # noqa: F401
                            data_root, read_metrics, run_config)


def test_loss_falls_and_metrics_are_logged(data_root, compile_cache, tmp_path):
  config = run_config(data_root, steps=24, checkpoint_every=24)
  result = loop.train_and_evaluate(config, tmp_path, progress=False)
  assert (result.step, result.total_steps, result.skipped, result.interrupted) == (24, 24, 0, False)
  metrics = pd.read_json(result.metrics_path, lines=True)
  steps = metrics[metrics["split"].isna()]
  assert list(steps["step"]) == list(range(1, 25))
  assert {"loss_bits", "lr", "grad_norm", "skipped", "tokens_per_s", "epochs_per_hour"} <= set(steps.columns)
  first, last = steps["loss_bits"].iloc[:3].mean(), steps["loss_bits"].iloc[-3:].mean()
  assert last < first - 1.0, f"loss went from {first:.3f} to {last:.3f} bits"
  assert steps["lr"].iloc[0] == 0.0 and np.isclose(steps["lr"].iloc[-1], config.learning_rate)  # warm-up
  assert steps["tokens_per_s"].iloc[1:].gt(0).all()
  test = metrics[metrics["split"] == "test"]
  assert list(test["step"]) == [24] and test["nll_bits"].iloc[0] == result.test_nll
  assert np.isfinite(result.test_nll)


def test_a_dataset_rebuilt_on_disk_mid_run_changes_nothing_the_run_reads(tmp_path, monkeypatch, compile_cache):
  # Two identical runs on a tiny sc09-espeak; in the second, the dataset is rebuilt with another seed once training
  # has started (as `prepare` at another scale's size in the same data root does). The run maps every split when it
  # starts, so its losses, validation and test NLL are those of the first run, bit for bit.
  root = tmp_path / "data"
  data.prepare("sc09-espeak", size="tiny", root=root)
  config = run_config(root, steps=4, eval_every=2, checkpoint_every=4)
  loop.train_and_evaluate(config, tmp_path / "a", progress=False)
  started = loop._TrainLoop.run

  def rebuild_then_run(self, *args, **kwargs):
    with pytest.warns(data.DataWarning, match="replacing the tiny copy"):
      data.prepare("sc09-espeak", size="tiny", root=root, seed=1)
    return started(self, *args, **kwargs)

  monkeypatch.setattr(loop._TrainLoop, "run", rebuild_then_run)
  loop.train_and_evaluate(config, tmp_path / "b", progress=False)
  fields = ("step", "split", "loss_bits", "nll_bits")
  logged = [[{k: r[k] for k in fields if k in r} for r in read_metrics(tmp_path / run)] for run in "ab"]
  assert logged[0] == logged[1] and [r.get("split") for r in logged[0]].count("valid") == 2


def _train_in_subprocess(config, workdir, cache) -> subprocess.Popen:
  config_file = workdir.parent / f"{workdir.name}.json"
  config_file.write_text(json.dumps(config.to_dict()))
  command = [sys.executable, "-m", "hrnn", "train", "--config", str(config_file), "--workdir", str(workdir),
             "--compile-cache", str(cache), "--no-progress"]
  return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _logged_step(workdir) -> int:
  try:
    return max((r["step"] for r in read_metrics(workdir)), default=0)
  except (FileNotFoundError, ValueError):  # not written yet, or a line half-written
    return 0


def _newest_checkpoint(workdir) -> int:
  return max((int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()), default=0)


@pytest.mark.heavy
def test_sigkill_at_random_steps_then_resume_is_bit_identical(data_root, compile_cache, tmp_path):
  """Killed (SIGKILL) at two random steps and stopped (SIGTERM) at a third, then finished: the parameters,
  optimiser state, EMA, RNG streams and counters equal those of a run that never stopped, bit for bit, and so does
  metrics.jsonl but for its wall-clock fields. A log line every 2 steps and a checkpoint every 3, so that resumes
  fall inside the steps of a log line."""
  config = run_config(data_root, steps=12, checkpoint_every=3, log_every=2)
  reference = _train_in_subprocess(config, tmp_path / "reference", compile_cache)
  assert reference.wait(timeout=600) == 0, reference.stdout.read()
  rng = random.Random(8)
  workdir = tmp_path / "stopped"
  for low, high, sig in ((1, 4, signal.SIGKILL), (5, 7, signal.SIGTERM), (8, 10, signal.SIGKILL)):
    # Beyond any step a previous process logged, so that the signal reaches this one in its training loop.
    target = max(rng.randint(low, high), _logged_step(workdir) + 1)
    process = _train_in_subprocess(config, workdir, compile_cache)
    while _logged_step(workdir) < target and process.poll() is None:
      time.sleep(0.01)
    process.send_signal(sig)
    if sig == signal.SIGKILL:
      assert process.wait(timeout=600) == -signal.SIGKILL, "the run ended before it could be killed"
    else:  # finishes the current step, checkpoints it and exits with 128 + SIGTERM
      assert process.wait(timeout=600) == 128 + signal.SIGTERM, process.stdout.read()
      assert _logged_step(workdir) <= _newest_checkpoint(workdir) < 12
  final = _train_in_subprocess(config, workdir, compile_cache)
  assert final.wait(timeout=600) == 0, final.stdout.read()
  assert_bit_identical(checkpoint_arrays(tmp_path / "reference", 12), checkpoint_arrays(workdir, 12))
  # Steps run twice (after the last checkpoint, before a kill) are logged once, each line as the uninterrupted
  # run logged it (its means over the same steps).
  steps = [r["step"] for r in read_metrics(workdir) if "split" not in r]
  assert steps == list(range(2, 13, 2))
  deterministic = lambda rows: [{k: v for k, v in r.items() if k not in loop.WALL_CLOCK_FIELDS} for r in rows]
  assert deterministic(read_metrics(workdir)) == deterministic(read_metrics(tmp_path / "reference"))


def test_nan_batch_is_skipped_and_counted(data_root, compile_cache, tmp_path, monkeypatch):
  original = data.batches

  def poisoned(ds, *args, epoch, start=0, **kwargs):
    for index, batch in enumerate(original(ds, *args, epoch=epoch, start=start, **kwargs), start):
      if (str(ds.split), epoch, index) == ("train", 0, 2):  # the third training batch
        batch["mask"][0, 5] = np.nan
      yield batch

  monkeypatch.setattr(data, "batches", poisoned)
  result = loop.train_and_evaluate(run_config(data_root, steps=5, checkpoint_every=5), tmp_path, progress=False)
  assert (result.step, result.skipped) == (5, 1)
  lines = [r for r in read_metrics(tmp_path) if "split" not in r]
  assert [r["skipped"] for r in lines] == [0, 0, 1, 1, 1]
  assert lines[2]["loss_bits"] is None and lines[3]["loss_bits"] is not None
  assert np.isfinite(result.test_nll)


def _tiny_state(data_root, **overrides):
  config = run_config(data_root, model=TINY_MODEL, **overrides)
  schedule = loop.learning_rate_schedule(config, 10)
  optimizer = loop.make_optimizer(config, schedule)
  return config, optimizer, schedule, loop.init_state(config, optimizer)


@pytest.mark.parametrize("poison", ["nan", "inf", "exploding"])
def test_non_finite_or_exploding_gradient_is_skipped(data_root, poison):
  config, optimizer, schedule, state = _tiny_state(data_root)
  leaves, treedef = jax.tree.flatten(jax.tree.map(jnp.zeros_like, state.params))
  bad = {"nan": np.nan, "inf": np.inf, "exploding": config.skip_norm}[poison]
  grads = jax.tree.unflatten(treedef, [leaves[0].at[(0,) * leaves[0].ndim].set(bad)] + leaves[1:])
  new, metrics = loop.apply_update(state, grads, jnp.float32(3.0), config, optimizer, schedule)
  assert (int(new.step), int(new.skipped), int(metrics["skipped"])) == (1, 1, 1)
  for before, after in ((state.params, new.params), (state.ema, new.ema), (state.opt_state, new.opt_state)):
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_finite_update_moves_params_ema_and_counts(data_root):
  config, optimizer, schedule, state = _tiny_state(data_root, warmup_steps=0)  # no warm-up: the first lr is > 0
  grads = jax.tree.map(jnp.ones_like, state.params)
  new, metrics = loop.apply_update(state, grads, jnp.float32(3.0), config, optimizer, schedule)
  assert (int(new.step), int(new.skipped)) == (1, 0)
  assert np.isclose(float(metrics["grad_norm"]), optax.global_norm(grads))
  moved = [np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in zip(jax.tree.leaves(state.params),
                                                                        jax.tree.leaves(new.params))]
  assert min(moved) > 0
  # EMA moved by exactly (1 - decay) of the parameter step.
  e0, e1, p1 = (np.asarray(jax.tree.leaves(t)[0]) for t in (state.ema, new.ema, new.params))
  np.testing.assert_allclose(e1, config.ema_decay * e0 + (1 - config.ema_decay) * p1, rtol=1e-6)


def test_the_model_is_traced_once_per_architecture(data_root, monkeypatch):
  """model_graph traces the constructor once per model config (seconds each): other seeds and the eval graph reuse
  that trace, and asking for one graph leaves the other's dropout setting as it was."""
  config = run_config(data_root, model=dataclasses.replace(TINY_MODEL, dropout=0.1))
  state = loop.init_state(config, loop.make_optimizer(config, optax.constant_schedule(0.0)))
  built = []

  class Counting(summary.HarmonicRNN):
    def __init__(self, cfg, *, rngs):
      built.append(cfg)
      super().__init__(cfg, rngs=rngs)

  monkeypatch.setattr(summary, "HarmonicRNN", Counting)
  summary.abstract_model.cache_clear()
  try:
    graphs = {(seed, dropout): loop.model_graph(dataclasses.replace(config, seed=seed), dropout=dropout)
              for seed in (0, 1) for dropout in (True, False)}
    assert built == [config.model]
    for (_, dropout), graphdef in graphs.items():
      model = nnx.merge(graphdef, state.params, state.rngs)
      flags = [m.deterministic for _, m in nnx.iter_graph(model) if isinstance(m, nnx.Dropout)]
      assert len(flags) == 6 and set(flags) == {not dropout}  # recurrent + MLP residual of 3 temporal blocks
    loop.model_graph(dataclasses.replace(config, model=dataclasses.replace(config.model, dropout=0.2)), dropout=True)
    assert len(built) == 2
  finally:
    summary.abstract_model.cache_clear()  # would hold the counting class


def test_mesh_with_accumulation_computes_what_one_device_computes(data_root):
  """The one code path: on 8 virtual devices (tests/conftest.py), data x seq = 4 x 2 with 2 micro-batches gives
  the summed loss, token count and gradients of one device with the whole batch."""
  assert jax.device_count() == 8
  config = run_config(data_root, model=TINY_MODEL)
  state = loop.init_state(config, loop.make_optimizer(config, optax.constant_schedule(0.0)))
  graphdef = loop.model_graph(config, dropout=True)
  rng = np.random.default_rng(1)
  lengths = np.array([320, 200, 320, 17, 320, 320, 1, 300])
  batch = {"tokens": rng.integers(0, 256, (8, 320)).astype(np.int32),
           "mask": (np.arange(320)[None, :] < lengths[:, None]).astype(np.float32)}
  results = []
  for data_devices, seq, accumulate in ((1, 1, 1), (4, 2, 2)):
    mesh = sharding.make_mesh(data=data_devices, seq=seq)
    placed = sharding.place_batch(batch, mesh, config.model)
    on_mesh = sharding.replicate(state, mesh)
    step = jax.jit(lambda p, r, t, m: loop.summed_gradients(graphdef, p, r, t, m, mesh, accumulate))
    results.append(step(on_mesh.params, on_mesh.rngs, placed["tokens"], placed["mask"]))
  (bits_1, count_1, grads_1, _), (bits_8, count_8, grads_8, _) = results
  assert float(count_1) == float(count_8) == lengths.sum()
  np.testing.assert_allclose(float(bits_1), float(bits_8), rtol=1e-5)
  for a, b in zip(jax.tree.leaves(grads_1), jax.tree.leaves(grads_8)):
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * np.abs(a).max())


def test_batch_that_does_not_split_over_the_mesh_is_a_config_error(data_root):
  with pytest.raises(ConfigError, match="batch_size=6"):
    loop.make_mesh(run_config(data_root, batch_size=6, mesh_data=4))


_WORKER = """
import sys, jax
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from hrnn.cli import main
sys.exit(main(["train", "--config", sys.argv[3], "--workdir", sys.argv[4], "--no-progress",
               "--compile-cache", sys.argv[5]]))
"""


def _with_devices(count: int) -> dict[str, str]:
  """This environment with `count` virtual CPU devices in $XLA_FLAGS (its other flags kept)."""
  flags = re.sub(r"--xla_force_host_platform_device_count=\d+", "", os.environ.get("XLA_FLAGS", ""))
  return {**os.environ, "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={count}".strip()}


@pytest.mark.heavy
def test_two_processes_each_feeding_half_the_batch(data_root, compile_cache, tmp_path):
  """Two local processes of one device each (jax.distributed over gloo) train what one process with two devices
  trains.

  The one-level TINY_MODEL with the runs' dropout: what is compared (one batch split over processes, the gradients
  summed across them, the dropout streams) does not depend on the model's depth, and it makes the three separate
  compiles (the program of each process and the one of two local devices) a fraction of the smoke model's."""
  model = dataclasses.replace(TINY_MODEL, dropout=MODEL.dropout)
  config = run_config(data_root, model=model, steps=4, checkpoint_every=4, mesh_data=None)  # all devices, all processes
  config_file = tmp_path / "config.json"
  config_file.write_text(json.dumps(config.to_dict()))
  env = _with_devices(1)
  port = 20000 + os.getpid() % 20000
  workers = [subprocess.Popen([sys.executable, "-c", _WORKER, f"127.0.0.1:{port}", str(i), str(config_file),
                               str(tmp_path / "two"), str(compile_cache)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for i in range(2)]
  for worker in workers:
    assert worker.wait(timeout=900) == 0, worker.stdout.read()
  single = subprocess.run([sys.executable, "-m", "hrnn", "train", "--config", str(config_file), "--workdir",
                           str(tmp_path / "one"), "--no-progress", "--compile-cache", str(compile_cache)],
                          env=_with_devices(2),
                          capture_output=True, text=True, timeout=900)
  assert single.returncode == 0, single.stderr
  two, one = checkpoint_arrays(tmp_path / "two", 4), checkpoint_arrays(tmp_path / "one", 4)
  for name in ("params", "ema"):
    for a, b in zip(two[name], one[name]):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert read_metrics(tmp_path / "two")[-1]["nll_bits"] == pytest.approx(read_metrics(tmp_path / "one")[-1]["nll_bits"],
                                                                          rel=1e-5)


def test_cli_config_new_run_resumed_run_and_overrides(data_root, tmp_path):
  from hrnn.train.checkpoint import write_config
  from hrnn.cli import build_parser
  from hrnn.cli.train import build_config

  parse = lambda *argv: build_parser().parse_args(["train", "--workdir", str(tmp_path), *argv])
  with pytest.raises(ConfigError, match="holds no run yet: give --preset"):
    build_config(parse())
  new = build_config(parse("--preset", "cpu", "--steps", "50", "--remat", "block", "--remat-chunk", "1000",
                            "--batch-size", "4"))
  assert (new.preset, new.dataset, new.steps, new.epochs, new.batch_size) == ("cpu", "sc09-espeak", 50, None, 4)
  assert new.model.remat == "block" and new.model.remat_chunk == 1000
  assert new.warmup_steps == 5 and new.seq_len == 1600  # the cpu scale's crops
  with pytest.raises(ConfigError, match="remat_chunk"):
    build_config(parse("--preset", "cpu", "--remat-chunk", "1000"))  # chunks need remat block or stack
  saved = run_config(data_root)
  write_config(tmp_path, saved)
  assert build_config(parse()) == saved
  longer = build_config(parse("--epochs", "3", "--eval-every", "2"))
  assert longer == dataclasses.replace(saved, steps=None, epochs=3, eval_every=2)
