"""Checkpoints of a training run, written with Orbax into WORKDIR/checkpoints/STEP/.

Each checkpoint holds the items of `hrnn.train.TrainState` (params, ema, opt_state, rngs, counters) as Orbax
pytrees, and `meta`, a JSON object with the step, the data-iterator position (epoch, batch index within the epoch)
and the full `TrainConfig`. Orbax writes a checkpoint into a temporary directory and renames it when complete, so
a run killed while saving leaves the previous checkpoints intact; only the newest `keep` are kept.

`load_model(workdir)` rebuilds the model of a run with its EMA (or raw) weights, for evaluation and sampling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx

from hrnn.config import TrainConfig
from hrnn.errors import HrnnError

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.json"  # the run's TrainConfig, human-readable, beside the checkpoints


class CheckpointError(HrnnError):
  """A checkpoint is missing, unreadable or belongs to a different run."""


class Checkpoints:
  """The checkpoints of one work directory.

  Args:
    workdir: the run's work directory; checkpoints go to WORKDIR/checkpoints/STEP.
    keep: how many of the newest checkpoints to keep.
  """

  def __init__(self, workdir: str | Path, *, keep: int = 3):
    self.directory = Path(workdir).absolute() / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    """Step of the newest complete checkpoint, or None when there is none."""
    return self._manager.latest_step()

  def save(self, step: int, items: dict[str, Any], meta: dict) -> None:
    """Writes `items` (name -> pytree of arrays) and the JSON `meta` as checkpoint `step` (in the background;
    `wait` or `close` finishes it). Every process of a multi-host run must call it."""
    meta = {**meta, "fingerprints": {name: fingerprint(tree) for name, tree in items.items()}}
    args = {name: ocp.args.StandardSave(tree) for name, tree in items.items()}
    self._manager.save(step, args=ocp.args.Composite(meta=ocp.args.JsonSave(meta), **args), force=True)

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
      first_line = (str(e).splitlines() or [""])[0].split(" See full TensorStore")[0][:200]
      raise CheckpointError(f"checkpoint {self.directory / str(step)} is unreadable ({type(e).__name__}: "
                            f"{first_line}); {self._recovery_hint(step)}") from e
    if not isinstance(meta, dict) or "config" not in meta:
      raise CheckpointError(f"checkpoint {self.directory / str(step)} has no run metadata; it was not written by "
                            f"hrnn train")
    damaged = [name for name, tree in items.items() if fingerprint(tree) != meta["fingerprints"][name]]
    if damaged:
      raise CheckpointError(f"checkpoint {self.directory / str(step)}: {', '.join(damaged)} differ from what was "
                            f"saved (damaged files); {self._recovery_hint(step)}")
    return items, meta

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
  """WORKDIR/config.json: the run's config, for people and for `read_config`."""
  path = Path(workdir) / CONFIG_FILE
  tmp = path.with_suffix(".tmp")
  tmp.write_text(json.dumps(config.to_dict(), indent=2) + "\n")
  tmp.replace(path)


def read_config(workdir: str | Path) -> TrainConfig | None:
  """The TrainConfig of the run in `workdir`, or None when it holds none."""
  path = Path(workdir) / CONFIG_FILE
  if not path.exists():
    return None
  try:
    return TrainConfig.from_dict(json.loads(path.read_text()))
  except (ValueError, TypeError) as e:
    raise CheckpointError(f"{path} is not a valid hrnn run config ({e}); fix or delete it") from e


def latest_step(workdir: str | Path) -> int:
  """Step of the newest complete checkpoint in `workdir`; CheckpointError when there is none."""
  return _existing(workdir).step(None)


def load_model(workdir: str | Path, ema: bool = True, step: int | None = None) -> tuple[nnx.Module, TrainConfig]:
  """The model of the run in `workdir` in eval mode, with its EMA weights (or the raw weights when ema=False).

  Returns (model, run_config): `run_config.model` is its ModelConfig, `run_config.dataset` names the data (and so
  its quantization). `step` picks a checkpoint (default: the newest). Raises CheckpointError when `workdir` holds
  no readable checkpoint.
  """
  from hrnn.model import HarmonicRNN

  checkpoints = _existing(workdir)
  try:
    step = checkpoints.step(step)
    _, meta = checkpoints.restore({}, step)
    config = TrainConfig.from_dict(meta["config"])
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
