"""Checkpoints: round trip, keep-last-K, load_model with EMA weights, and clear errors that leave every
file untouched for damaged, missing or foreign checkpoints."""

import dataclasses
import hashlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hrnn.train import loop
from hrnn.train.checkpoint import CheckpointError, Checkpoints, fingerprint, latest_step, load_model, read_config
from hrnn.cli import main
from train_fixtures import TINY_MODEL, data_root, run_config, saved_run  # noqa: F401


def _tree_digest(directory) -> dict[str, str]:
  """Relative path -> SHA-256 of every file under `directory` but the trainer's lock record (loop.LOCK_FILE)."""
  return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(directory.rglob("*")) if p.is_file() and p.name != loop.LOCK_FILE}


def test_round_trip_keeps_the_newest_k(tmp_path):
  checkpoints = Checkpoints(tmp_path, keep=2)
  tree = {"w": jnp.arange(6.0).reshape(2, 3), "n": jnp.int32(7), "key": jax.random.key(3)}
  for step in (1, 2, 3):
    checkpoints.save(step, {"tree": jax.tree.map(lambda x: x + step if x.dtype != tree["key"].dtype else x, tree)},
                     {"step": step, "config": {}})
  checkpoints.wait()
  assert checkpoints.all_steps() == [2, 3] and checkpoints.latest_step() == 3
  abstract = {"tree": jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)}
  items, meta = checkpoints.restore(abstract, 2)
  checkpoints.close()
  assert meta["step"] == 2 and meta["fingerprints"]["tree"] == fingerprint(items["tree"])
  np.testing.assert_array_equal(items["tree"]["w"], np.arange(6.0).reshape(2, 3) + 2)
  assert int(items["tree"]["n"]) == 9
  np.testing.assert_array_equal(jax.random.key_data(items["tree"]["key"]), jax.random.key_data(tree["key"]))


def test_fingerprint_changes_with_any_bit():
  x = jnp.linspace(-1.0, 1.0, 1000)
  flipped = jax.lax.bitcast_convert_type(x, jnp.uint32).at[500].add(1)
  assert fingerprint({"x": x}) != fingerprint({"x": jax.lax.bitcast_convert_type(flipped, jnp.float32)})
  assert fingerprint({"x": x}) == fingerprint({"x": x + 0.0})


def test_load_model_gives_ema_or_raw_weights_and_the_run_config(data_root, tmp_path):
  config = run_config(data_root, model=TINY_MODEL)
  state = saved_run(tmp_path, config, step=5)
  assert latest_step(tmp_path) == 5 and read_config(tmp_path) == config
  for ema, expected in ((True, state.ema), (False, state.params)):
    model, run_config_ = load_model(tmp_path, ema=ema)
    assert run_config_ == config and run_config_.model == TINY_MODEL and run_config_.dataset == "sc09-espeak"
    from flax import nnx
    loaded = nnx.state(model, nnx.Param)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(expected)):
      np.testing.assert_array_equal(a, b)


def _damage(checkpoint_dir, how: str) -> None:
  """Deletes the meta item, or truncates / flips a bit in the params item. Then every array-data file (under a d/
  folder) is damaged, not just one: Orbax may leave data files that no manifest refers to, and damaging only those
  changes nothing that is read."""
  if how == "meta-deleted":
    for p in (checkpoint_dir / "meta").iterdir():
      p.unlink()
    return
  data_files = [p for p in (checkpoint_dir / "params").rglob("*") if p.is_file() and p.parent.name == "d"]
  assert data_files, "no array data files found: has Orbax's layout changed?"
  for path in data_files:
    raw = bytearray(path.read_bytes())
    if how == "truncated":
      del raw[len(raw) // 2:]
    else:  # bit-flipped
      raw[len(raw) // 2] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "meta-deleted"])
def test_damaged_checkpoint_is_a_clear_error_and_nothing_is_overwritten(data_root, tmp_path, how):
  config = run_config(data_root, model=TINY_MODEL)
  saved_run(tmp_path, config, step=4)
  (tmp_path / "metrics.jsonl").write_text('{"step": 4, "loss_bits": 7.0}\n{"step": 5, "loss_bits": 6.9}\n')
  _damage(tmp_path / "checkpoints" / "4", how)
  before = _tree_digest(tmp_path)
  with pytest.raises(CheckpointError, match=r"checkpoints/4"):
    loop.train_and_evaluate(config, tmp_path, progress=False)
  with pytest.raises(CheckpointError, match=r"checkpoints/4"):
    load_model(tmp_path, ema=False)  # the raw weights are the damaged item
  assert _tree_digest(tmp_path) == before


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys):
  with pytest.raises(CheckpointError, match="no checkpoints in .*train first"):
    load_model(tmp_path / "nothing")
  assert not (tmp_path / "nothing").exists()
  assert main(["eval", "--workdir", str(tmp_path / "nothing")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "no checkpoints" in err and "Traceback" not in err


def test_workdir_of_another_run_is_refused(data_root, tmp_path):
  config = run_config(data_root, model=TINY_MODEL)
  saved_run(tmp_path, config)
  before = _tree_digest(tmp_path)
  other = dataclasses.replace(config, learning_rate=0.5, model=dataclasses.replace(TINY_MODEL, width=16))
  with pytest.raises(CheckpointError, match=r"different run \(learning_rate: 0.01 -> 0.5; model.width: 8 -> 16\)"):
    loop.train_and_evaluate(other, tmp_path, progress=False)
  assert _tree_digest(tmp_path) == before
