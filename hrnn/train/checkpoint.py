"""Checkpoints of a training run, written with Orbax into WORKDIR/checkpoints/STEP/.

Each checkpoint holds the items of `hrnn.train.loop.TrainState` (params, ema, opt_state, rngs, counters) as Orbax
pytrees, and `meta`, a JSON object with the step, the data-iterator position (epoch, batch index within the epoch)
and the full `TrainConfig`. Orbax writes a checkpoint into a temporary directory and renames it when complete, so
a run killed while saving leaves the previous checkpoints intact; only the newest `keep` are kept. Saving is
synchronous, so that a failed write (a full disk) stops the run at once with one CheckpointError naming the
checkpoint, its temporary files removed and the older checkpoints intact.

`load_model(workdir)` rebuilds the model of a run with its EMA (or raw) weights, for evaluation and sampling.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx

from hrnn.config import TrainConfig
from hrnn.errors import HrnnError, HrnnWarning
from hrnn.model.harmonic_rnn import HarmonicRNN

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"  # the run's TrainConfig, human-readable, beside the checkpoints


class CheckpointError(HrnnError):
  """A checkpoint is missing, unreadable, cannot be written or belongs to a different run."""


class CheckpointWarning(HrnnWarning):
  """A run's config.json was missing and is taken from its newest checkpoint."""


class Checkpoints:
  """The checkpoints of one work directory.

  Args:
    workdir: the run's work directory; checkpoints go to WORKDIR/checkpoints/STEP.
    keep: how many of the newest checkpoints to keep.
  """

  def __init__(self, workdir: str | Path, *, keep: int = 3):
    self.directory = Path(workdir).absolute() / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, enable_async_checkpointing=False)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """Step of the newest complete checkpoint, or None when there is none."""
    return self._manager.latest_step()

  def save(self, step: int, items: dict[str, Any], meta: dict) -> None:
    """Writes `items` (name -> pytree of arrays) and the JSON `meta` as checkpoint `step`. Every process of a
    multi-host run must call it. Raises CheckpointError when it cannot be written (e.g. the disk is full): its
    temporary files are removed, older checkpoints stay intact."""
    meta = {**meta, "fingerprints": {name: fingerprint(tree) for name, tree in items.items()}}
    args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
    try:
      self._manager.save(step, args=ocp.args.Composite(meta=ocp.args.JsonSave(meta), **args), force=True)
      self._manager.wait_until_finished()
    except Exception as e:  # Orbax and TensorStore wrap OSErrors (ENOSPC, EACCES...) in many types
      for partial in self.directory.glob(f"{step}.orbax-checkpoint-tmp*"):
        shutil.rmtree(partial, ignore_errors=True)
      kept = sorted(s for s in self.all_steps() if s != step)
      why = "no space left on the device" if shutil.disk_usage(self.directory).free < (1 << 20) else _first_line(e)
      raise CheckpointError(
          f"cannot write checkpoint {self.directory / str(step)} ({why}); the older checkpoints "
          f"{kept or '(none)'} are intact. Free some space (or fix the folder's permissions) and run the same "
          f"command again to resume") from e

  def restore(self, abstract: dict[str, Any], step: int | None = None) -> tuple[dict[str, Any], dict]:
    """Reads the items named in `abstract` (name -> pytree of jax.ShapeDtypeStruct, with shardings) and the meta
    of checkpoint `step` (default: the newest). Raises CheckpointError when missing or unreadable."""
    step = self.step(step)
    args = {name: ocp.args.StandardRestore(tree) for name, tree in abstract.items()}
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore(), **args))
      items = {name: restored[name] for name in abstract}
      meta = restored["meta"]
    except Exception as e:  # Orbax and TensorStore raise many types for damaged files
      raise CheckpointError(f"checkpoint {self.directory / str(step)} is unreadable ({_first_line(e)}); "
                            f"{self._recovery_hint(step)}") from e
    if not isinstance(meta, dict) or "config" not in meta:
      raise CheckpointError(f"checkpoint {self.directory / str(step)} has no run metadata; it was not written by "
                            f"hrnn train")
    damaged = [name for name, tree in items.items() if fingerprint(tree) != meta["fingerprints"][name]]
    if damaged:
      raise CheckpointError(f"checkpoint {self.directory / str(step)}: {', '.join(damaged)} differ from what was "
                            f"saved (damaged files); {self._recovery_hint(step)}")
    return items, meta

  def run_config(self, step: int) -> TrainConfig:
    """The TrainConfig recorded in checkpoint `step` (read from its meta alone)."""
    _, meta = self.restore({}, step)
    try:
      return TrainConfig.from_dict(meta["config"])
    except (ValueError, TypeError) as e:
      raise CheckpointError(f"checkpoint {self.directory / str(step)}: its recorded config is not valid ({e}); "
                            f"it was written by another hrnn version") from e

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def wait(self) -> None:
    """Blocks until a background save has been written."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()

  def _recovery_hint(self, step: int) -> str:
    older = [s for s in self.all_steps() if s < step]
    if older:
      return (f"it was left untouched. To resume from the previous checkpoint (step {max(older)}) move that "
              f"directory away, or start a new run in another --workdir")
    return "it was left untouched and there is no older checkpoint: start a new run in another --workdir"

  def step(self, step: int | None) -> int:
    """`step` if there is a checkpoint for it, the newest when None; else CheckpointError."""
    steps = self.all_steps()
    if step is None:
      if not steps:
        raise CheckpointError(f"no checkpoint in {self.directory}; train first: "
                              f"hrnn train --preset P --dataset D --workdir {self.directory.parent}")
      return max(steps)
    if step not in steps:
      raise CheckpointError(f"no checkpoint for step {step} in {self.directory} (have {steps})")
    return step


def _first_line(e: BaseException) -> str:
  """The exception's type and the first line of its message (TensorStore's run to pages)."""
  return f"{type(e).__name__}: " + (str(e).splitlines() or [""])[0].split(" See full TensorStore")[0][:200]


def fingerprint(tree: Any) -> int:
  """Sum of the 32-bit patterns of every array element, mod 2^32: a flipped bit in any array changes it."""
  return int(_fingerprint(jax.tree.map(_as_uint32, tree)))


@jax.jit
def _fingerprint(tree):
  return sum((jnp.sum(x, dtype=jnp.uint32) for x in jax.tree.leaves(tree)), jnp.uint32(0))


def _as_uint32(x: jax.Array) -> jax.Array:
  if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
    x = jax.random.key_data(x)
  if x.dtype.itemsize != 4:
    raise TypeError(f"fingerprint: only 32-bit arrays are checkpointed, got {x.dtype}")
  return jax.lax.bitcast_convert_type(x, jnp.uint32)


def write_config(workdir: str | Path, config: TrainConfig) -> None:
  """WORKDIR/config.json: the run's config, for people and for `read_config` (written to a temporary name, then
  renamed: a full disk leaves the previous one)."""
  path = Path(workdir) / CONFIG_FILE
  tmp = path.with_suffix(".tmp")
  try:
    tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    tmp.replace(path)
  finally:
    tmp.unlink(missing_ok=True)


def read_config(workdir: str | Path) -> TrainConfig | None:
  """The TrainConfig of the run in `workdir`, or None when it holds none.

  When config.json is missing but checkpoints are there, the config recorded in the newest checkpoint is returned
  (with a CheckpointWarning; `hrnn train` writes config.json again when it resumes).
  """
  path = Path(workdir) / CONFIG_FILE
  if not path.exists():
    if not (Path(workdir) / CHECKPOINT_DIR).is_dir():
      return None
    checkpoints = Checkpoints(workdir)
    try:
      if not checkpoints.all_steps():
        return None
      step = checkpoints.step(None)
      config = checkpoints.run_config(step)
    finally:
      checkpoints.close()
    warnings.warn(CheckpointWarning(f"{path} is missing; using the config recorded in checkpoint "
                                    f"{checkpoints.directory / str(step)}"), stacklevel=2)
    return config
  try:
    return TrainConfig.from_dict(json.loads(path.read_text()))
  except (ValueError, TypeError) as e:
    raise CheckpointError(f"{path} is not a valid hrnn run config ({e}); fix or delete it") from e


def config_differences(old: TrainConfig, new: TrainConfig, resumable: frozenset = frozenset(),
                       resumable_model: frozenset = frozenset()) -> list[str]:
  """`field: old -> new` for every field (model fields as model.FIELD) that differs, except the resumable ones."""
  differ = [f"{f.name}: {getattr(old, f.name)!r} -> {getattr(new, f.name)!r}" for f in dataclasses.fields(old)
            if f.name not in resumable and f.name != "model" and getattr(old, f.name) != getattr(new, f.name)]
  differ += [f"model.{f.name}: {getattr(old.model, f.name)!r} -> {getattr(new.model, f.name)!r}"
             for f in dataclasses.fields(old.model)
             if f.name not in resumable_model and getattr(old.model, f.name) != getattr(new.model, f.name)]
  return differ


def latest_step(workdir: str | Path) -> int:
  """Step of the newest complete checkpoint in `workdir`; CheckpointError when there is none."""
  return _existing(workdir).step(None)


def load_model(workdir: str | Path, ema: bool = True, step: int | None = None) -> tuple[nnx.Module, TrainConfig]:
  """The model of the run in `workdir` in eval mode, with its EMA weights (or the raw weights when ema=False).

  Returns (model, run_config): `run_config.model` is its ModelConfig, `run_config.dataset` names the data (and so
  its quantization). `step` picks a checkpoint (default: the newest). Raises CheckpointError when `workdir` holds
  no readable checkpoint.
  """
  checkpoints = _existing(workdir)
  try:
    step = checkpoints.step(step)
    config = checkpoints.run_config(step)
    model = HarmonicRNN(config.model, rngs=nnx.Rngs(config.seed))
    name = "ema" if ema else "params"
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, nnx.state(model, nnx.Param))
    items, _ = checkpoints.restore({name: abstract}, step)
  finally:
    checkpoints.close()
  nnx.update(model, items[name])
  model.eval()
  return model, config


def _existing(workdir: str | Path) -> Checkpoints:
  """The checkpoints of a work directory that must already hold some (nothing is created)."""
  if not (Path(workdir) / CHECKPOINT_DIR).is_dir():
    raise CheckpointError(f"no checkpoints in {Path(workdir) / CHECKPOINT_DIR}; train first: "
                          f"hrnn train --preset P --dataset D --workdir {workdir}")
  return Checkpoints(workdir)
