"""Training that survives preemption: one loop for one CPU, one GPU, a device mesh or many hosts.

  loss    L = sum_it m_it (-log2 p(x_it | x_i,<t)) / sum_it m_it        bits per real sample (mask m: 0 = padding)
  grads   g = dL/dtheta, summed over `grad_accum` micro-batches before the division by sum m
  skip    when L or ||g|| is not finite, or ||g|| >= skip_norm: params, optimiser state and EMA stay unchanged
  update  g <- g min(1, clip_norm / ||g||);  theta <- AdamW(theta, g; lr_t, b1, b2, weight decay)
          lr_t = lr min(1, t / warmup)  (then constant, or cosine decay to 0 at the last step)
  EMA     theta_ema <- decay theta_ema + (1 - decay) theta                (evaluation and sampling use theta_ema)

The batch is sharded over a ("data", "seq") device mesh (`hrnn.train.sharding`): rows over "data", time over "seq"
(context parallelism). Each host reads its own rows of every global batch; `jax.distributed.initialize` before
calling `train_and_evaluate` makes it a multi-host run with no other change.

Everything a resumed run needs is in the checkpoints (`hrnn.train.checkpoint`): parameters, optimiser state, EMA, the
dropout RNG streams, step and skip counters, the data position (epoch, batch index) and the config. The data order
is a function of (seed, epoch), dropout of the saved RNG streams, so a run resumed from a checkpoint computes
bit-identically the same steps as one that never stopped. Checkpoints are written every `checkpoint_every` steps,
at the end, and when SIGTERM or SIGINT arrives (then the run stops after the current step).

metrics.jsonl after a resume: the lines of steps after the checkpoint (logged by the run that died) are dropped,
and the checkpoint carries the per-step metrics since the last line, so the resumed run logs the same lines as an
uninterrupted one: every field equal except the wall-clock ones (WALL_CLOCK_FIELDS), and no step twice.

One trainer per work directory: WORKDIR/lock.json is held (an OS file lock, released when the process ends, even by
SIGKILL) and names the running trainer; a second one stops at once naming it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import fcntl
import json
import math
import os
import signal
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh
from tqdm.auto import tqdm

from hrnn import data
from hrnn.train import sharding
from hrnn.train.checkpoint import Checkpoints, CheckpointError, config_differences, read_config, write_config
from hrnn.config import ConfigError, ModelConfig, TrainConfig
from hrnn.errors import HrnnError, HrnnWarning
from hrnn.train.evaluate import make_eval_step, split_nll
from hrnn.model.harmonic_rnn import HarmonicRNN, nll_bits
from hrnn.model.summary import abstract_model

METRICS_FILE = "metrics.jsonl"
LOCK_FILE = "lock.json"
# Fields of a metrics line that measure time, not the computation: they differ between runs (all others are
# deterministic functions of the config and the data, also across a resume).
WALL_CLOCK_FIELDS = frozenset({"tokens_per_s", "epochs_per_hour"})
# Per-step metrics a log line is computed from; those of the steps since the last line travel in a checkpoint.
STEP_METRICS = {"loss_bits": np.float32, "grad_norm": np.float32, "lr": np.float32, "skipped": np.int32}
# Config fields a resumed run may change: lengths and bookkeeping, and the model's memory/speed options.
RESUMABLE_FIELDS = frozenset({"steps", "epochs", "data_root", "checkpoint_every", "keep_checkpoints", "eval_every",
                              "eval_batch_size", "log_every", "mesh_data", "mesh_seq"})
RESUMABLE_MODEL_FIELDS = frozenset({"scan_backend", "remat", "remat_chunk"})


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training (all arrays, replicated over the mesh)."""

  step: jax.Array  # int32: optimizer steps taken, skipped ones included (= batches consumed)
  skipped: jax.Array  # int32: updates skipped so far
  params: nnx.State
  ema: nnx.State
  opt_state: optax.OptState
  rngs: nnx.State  # the model's dropout RNG streams (keys and counters)

  def items(self) -> dict[str, Any]:
    """The checkpoint items: name -> pytree (the scalar counters together in one)."""
    return {"counters": {"step": self.step, "skipped": self.skipped}, "params": self.params, "ema": self.ema,
            "opt_state": self.opt_state, "rngs": self.rngs}

  @classmethod
  def from_items(cls, items: dict[str, Any]) -> TrainState:
    return cls(**items["counters"], params=items["params"], ema=items["ema"], opt_state=items["opt_state"],
               rngs=items["rngs"])


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """What `train_and_evaluate` returns.

  Attributes:
    workdir: the run's work directory.
    step: optimizer steps done (the step of the last checkpoint).
    total_steps: steps of the whole run.
    skipped: updates skipped because of a non-finite loss or an exploding gradient.
    test_nll: test bits per sample with the EMA weights; None when the run was interrupted.
    interrupted: stopped by SIGTERM/SIGINT after writing a checkpoint; run again to resume.
  """

  workdir: Path
  step: int
  total_steps: int
  skipped: int
  test_nll: float | None
  interrupted: bool

  @property
  def metrics_path(self) -> Path:
    """WORKDIR/metrics.jsonl; `pandas.read_json(path, lines=True)` reads it."""
    return self.workdir / METRICS_FILE


def compiler_options(cfg: ModelConfig) -> dict[str, str]:
  """XLA options for `jax.jit(..., compiler_options=...)` of a gradient of the model `cfg`.

  Rematerialisation (`cfg.remat`) keeps recomputed values apart from the forward pass's with optimization
  barriers; XLA on CPU expands those barriers away (its cse_barrier_expander pass) and then merges the two, which
  silently undoes remat (measured: no memory saved). Keeping the barriers restores it.
  """
  return {"xla_disable_hlo_passes": "cse_barrier_expander"} if cfg.remat != "none" else {}


def learning_rate_schedule(config: TrainConfig, total_steps: int) -> optax.Schedule:
  """Linear warm-up from 0 over `warmup_steps`, then constant or cosine decay to 0 at `total_steps`."""
  if config.schedule == "cosine":
    return optax.warmup_cosine_decay_schedule(0.0, config.learning_rate, config.warmup_steps,
                                              max(total_steps, config.warmup_steps + 1))
  if config.warmup_steps == 0:
    return optax.constant_schedule(config.learning_rate)
  return optax.linear_schedule(0.0, config.learning_rate, config.warmup_steps)


def make_optimizer(config: TrainConfig, schedule: optax.Schedule) -> optax.GradientTransformation:
  """AdamW (its input is clipped by `apply_update`, which needs the gradient norm anyway)."""
  return optax.adamw(schedule, b1=config.b1, b2=config.b2, weight_decay=config.weight_decay)


def make_mesh(config: TrainConfig) -> Mesh:
  """The ("data", "seq") mesh of a run: `mesh_seq` devices along time, the rest (or `mesh_data`) along rows."""
  seq = config.mesh_seq
  rows = config.batch_size // config.grad_accum
  # Default: as many devices along the data axis as divide the micro-batch (all of them when the batch allows).
  data_devices = config.mesh_data or math.gcd(rows, jax.device_count() // seq)
  if rows % data_devices or config.batch_size % jax.process_count():
    raise ConfigError(
        f"TrainConfig.batch_size={config.batch_size}: each of the grad_accum={config.grad_accum} micro-batches "
        f"must split evenly over the {data_devices} devices of the mesh's data axis and the "
        f"{jax.process_count()} processes; choose another batch size or set mesh_data")
  return sharding.make_mesh(data=data_devices, seq=seq)


def model_graph(config: TrainConfig, *, dropout: bool) -> nnx.GraphDef:
  """The structure of the run's model with dropout on (training) or off (no parameters are created)."""
  # The structure does not depend on the seed: every run of one architecture shares the cached trace; `nnx.view`
  # copies, so the shared model is never changed.
  return nnx.graphdef(nnx.view(abstract_model(config.model), deterministic=not dropout))


def init_state(config: TrainConfig, optimizer: optax.GradientTransformation) -> TrainState:
  """The initial TrainState (on the default device): parameters drawn from `config.seed`, EMA = parameters."""
  model = HarmonicRNN(config.model, rngs=nnx.Rngs(config.seed))
  params, rngs = nnx.state(model, nnx.Param), nnx.state(model, nnx.RngState)
  return TrainState(step=jnp.int32(0), skipped=jnp.int32(0), params=params, ema=jax.tree.map(jnp.copy, params),
                    opt_state=optimizer.init(params), rngs=rngs)


def micro_batches(x: jax.Array, k: int) -> jax.Array:
  """[B, ...] -> [k, B/k, ...]: row r of micro-batch j is row r*k + j, so each device keeps its own rows."""
  return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)


def summed_gradients(graphdef: nnx.GraphDef, params: nnx.State, rngs: nnx.State, tokens: jax.Array,
                     mask: jax.Array, mesh: Mesh, accumulate: int):
  """Sum over `accumulate` micro-batches of the summed NLL bits, its gradient and the real-token count.

  Returns (bits, count, grads, rngs) with the dropout streams advanced.
  """

  def nll(params, rngs, tokens, mask):
    model = nnx.merge(graphdef, params, rngs, copy=True)
    bits, count = nll_bits(sharding.sharded_logits(model, tokens, mesh), tokens, mask)
    return bits, (count, nnx.state(model, nnx.RngState))

  def accumulate_one(carry, micro):
    bits, count, grads, rngs = carry
    (b, (c, rngs)), g = jax.value_and_grad(nll, has_aux=True)(params, rngs, *micro)
    return (bits + b, count + c, jax.tree.map(jnp.add, grads, g), rngs), None

  zeros = jax.tree.map(jnp.zeros_like, params)
  carry = (jnp.float32(0), jnp.float32(0), zeros, rngs)
  micro = (micro_batches(tokens, accumulate), micro_batches(mask, accumulate))
  (bits, count, grads, rngs), _ = jax.lax.scan(accumulate_one, carry, micro)
  return bits, count, grads, rngs


def apply_update(state: TrainState, grads: nnx.State, loss: jax.Array, config: TrainConfig,
                 optimizer: optax.GradientTransformation,
                 schedule: optax.Schedule) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step from the mean-loss gradient: clipped to global norm `clip_norm`, skipped (and counted)
  when the loss or the norm is not finite or the norm is >= `skip_norm`."""
  grad_norm = optax.global_norm(grads)
  ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & (grad_norm < config.skip_norm)
  scale = jnp.where(grad_norm < config.clip_norm, 1.0, config.clip_norm / grad_norm)
  grads = jax.tree.map(lambda g: g * scale, grads)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  ema = jax.tree.map(lambda e, p: config.ema_decay * e + (1.0 - config.ema_decay) * p, state.ema, params)
  keep_if_ok = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
  applied = state.step - state.skipped  # the optimizer's own count: the lr of this update
  state = state.replace(
      step=state.step + 1, skipped=state.skipped + (~ok).astype(jnp.int32),
      params=keep_if_ok(params, state.params), ema=keep_if_ok(ema, state.ema),
      opt_state=keep_if_ok(opt_state, state.opt_state))
  metrics = {"loss_bits": loss, "grad_norm": grad_norm, "lr": schedule(applied), "skipped": state.skipped}
  return state, metrics


def make_train_step(graphdef: nnx.GraphDef, config: TrainConfig, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, mesh: Mesh):
  """The jitted step (state, batch) -> (state, metrics); the input state is donated."""

  def train_step(state: TrainState, batch: dict[str, jax.Array]):
    bits, count, grads, rngs = summed_gradients(graphdef, state.params, state.rngs, batch["tokens"],
                                                batch["mask"], mesh, config.grad_accum)
    count = jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g: g / count, grads)
    return apply_update(state.replace(rngs=rngs), grads, bits / count, config, optimizer, schedule)

  return jax.jit(train_step, out_shardings=sharding.replicated(mesh), donate_argnums=0,
                 compiler_options=compiler_options(config.model))  # keeps remat effective on CPU


def read_metrics(workdir: str | Path) -> list[dict]:
  """The records of WORKDIR/metrics.jsonl, oldest first ([] before the first): the one reader of the training log.
  Train rows hold step, epoch, loss_bits, lr, grad_norm, skipped, tokens_per_s, epochs_per_hour; evaluation rows
  step, split ("valid" / "test") and nll_bits."""
  path = Path(workdir) / METRICS_FILE
  if not path.exists():
    return []
  lines = [line for line in path.read_text().splitlines() if line.strip()]
  records = []
  for i, line in enumerate(lines):
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      if i < len(lines) - 1:  # a last line cut short (the process died, or the disk filled, writing it) is left out
        raise CheckpointError(f"{path}: line {i + 1} is not JSON; the file was edited or damaged: repair or delete "
                              "that line") from None
  return records


class TrainingLocked(HrnnError):
  """Another trainer holds the work directory."""


class WorkdirLock:
  """WORKDIR/lock.json, held (fcntl.flock) by the one process training in a work directory.

  The file records the holder {"pid", "host", "since"} for the message a second trainer gets. The operating system
  releases the lock when its process ends however it ends, so the file of a dead trainer is a stale record that the
  next one simply takes over.
  """

  def __init__(self, workdir: Path):
    self.path = workdir / LOCK_FILE
    self._fd = None

  def acquire(self) -> None:
    fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):  # e.g. ENOLCK: a network file system without locks
        os.close(fd)
        warnings.warn(HrnnWarning(f"cannot lock {self.path} ({e.strerror}); make sure no other hrnn train uses "
                                  f"{self.path.parent}"), stacklevel=3)
        return
      text = os.pread(fd, 4096, 0).decode(errors="replace")
      os.close(fd)
      try:
        holder = json.loads(text)
        who = f"pid {holder['pid']} on {holder['host']}, since {holder['since']}"
      except (ValueError, KeyError, TypeError):
        who = "another process"
      raise TrainingLocked(f"{self.path.parent} is in use by another hrnn train ({who}); wait for it to finish or "
                           f"stop it, or use another --workdir") from None
    since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}) + "\n"
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, record.encode(), 0)
    except OSError as e:  # a full disk: name the file
      os.close(fd)
      raise OSError(e.errno, e.strerror, str(self.path)) from None
    self._fd = fd

  def release(self) -> None:
    if self._fd is not None:
      os.close(self._fd)  # releases the lock; the file stays as a stale record
      self._fd = None


class MetricsLog:
  """WORKDIR/metrics.jsonl, one JSON object per line, written by process 0 only; non-finite numbers as null."""

  def __init__(self, workdir: Path):
    self.path = workdir / METRICS_FILE
    self.enabled = jax.process_index() == 0

  def write(self, record: dict) -> None:
    if not self.enabled:
      return
    clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in record.items()}
    with self.path.open("a") as f:
      f.write(json.dumps(clean) + "\n")

  def records(self) -> list[dict]:
    return read_metrics(self.path.parent)

  def truncate_after(self, step: int) -> None:
    """Drops the lines of steps after `step` (logged by a run that died before its next checkpoint)."""
    if not self.enabled or not self.path.exists():
      return
    kept = [json.dumps(r) for r in self.records() if r["step"] <= step]
    tmp = self.path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(self.path)


class StopSignals:
  """Context manager: while active, SIGTERM and SIGINT only set `requested` (a second SIGINT interrupts at once).

  In a multi-host run `should_stop()` agrees across processes, so that all of them checkpoint the same step.
  """

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received: int | None = None
    self._previous = {}

  def __enter__(self):
    with contextlib.suppress(ValueError):  # signal handlers can only be set from the main thread
      for sig in self.SIGNALS:
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)

  def _handle(self, signum, frame):
    if signum == signal.SIGINT and self.received == signal.SIGINT:
      raise KeyboardInterrupt
    self.received = signum

  def should_stop(self) -> bool:
    stop = self.received is not None
    if jax.process_count() > 1:
      stop = bool(np.max(multihost_utils.process_allgather(np.int32(stop))))
    return stop


def train_and_evaluate(config: TrainConfig, workdir: str | Path, *, progress: bool = True) -> TrainResult:
  """Trains (resuming from the newest checkpoint in `workdir`), then evaluates the EMA weights on the test split.

  Writes WORKDIR/config.json, WORKDIR/checkpoints/STEP and WORKDIR/metrics.jsonl. Returns early with
  `interrupted=True` after checkpointing when SIGTERM/SIGINT arrives.
  """
  workdir = Path(workdir).absolute()
  workdir.mkdir(parents=True, exist_ok=True)
  lock = WorkdirLock(workdir)
  if jax.process_index() == 0:
    lock.acquire()
  try:
    return _train_and_evaluate(config, workdir, progress)
  finally:
    lock.release()


def _train_and_evaluate(config: TrainConfig, workdir: Path, progress: bool) -> TrainResult:
  _check_resumable(read_config(workdir), config, workdir)
  mesh = make_mesh(config)
  # Every split the run reads is mapped now, before the first step: a dataset rebuilt on disk while the run trains
  # (e.g. `prepare` of another scale's size in the same data root) changes neither its batches nor its evaluations.
  splits = {split: data.load_split(config.dataset, split, root=config.data_root, minmax_unit=config.minmax_unit)
            for split in ("train", "test", *(("valid",) if config.eval_every else ()))}
  train_ds = splits["train"]
  seq_len = config.seq_len or data.get_spec(config.dataset, config.data_root).length
  steps_per_epoch = data.num_batches(train_ds, config.batch_size)
  total_steps = config.steps or config.epochs * steps_per_epoch
  schedule = learning_rate_schedule(config, total_steps)
  optimizer = make_optimizer(config, schedule)
  checkpoints = Checkpoints(workdir, keep=config.keep_checkpoints)
  log = MetricsLog(workdir)
  try:
    _check_checkpoint_config(checkpoints, config)
    graphdef = model_graph(config, dropout=True)
    state, window = _initial_or_resumed_state(config, optimizer, mesh, checkpoints, steps_per_epoch, log)
    if jax.process_index() == 0:  # only now that the run's files are known to be in order
      write_config(workdir, config)
    train_step = make_train_step(graphdef, config, optimizer, schedule, mesh)
    loop = _TrainLoop(config, graphdef, mesh, checkpoints, log, steps_per_epoch, seq_len, total_steps, splits)
    with StopSignals() as signals:
      state = loop.run(state, train_step, _epoch_batches(config, train_ds, seq_len, steps_per_epoch), signals,
                       progress, window)
    step, skipped = int(state.step), int(state.skipped)
    if step < total_steps:
      return TrainResult(workdir, step, total_steps, skipped, None, interrupted=True)
    test_nll = logged_test_nll(workdir, step)
    if test_nll is None:
      test_nll = loop.evaluate(state, "test", progress)
  finally:
    checkpoints.close()
  return TrainResult(workdir, step, total_steps, skipped, test_nll, interrupted=False)


class _TrainLoop:
  """The steps of a run between (re)start and end or interruption: logging, evaluation, checkpoints."""

  def __init__(self, config, graphdef, mesh, checkpoints, log, steps_per_epoch, seq_len, total_steps, splits):
    self.config, self.graphdef, self.mesh = config, graphdef, mesh
    self.checkpoints, self.log = checkpoints, log
    self.steps_per_epoch, self.seq_len, self.total_steps = steps_per_epoch, seq_len, total_steps
    self.eval_step = make_eval_step(model_graph(config, dropout=False), mesh)
    self.splits = splits  # split name -> dataset, mapped when the run started

  def run(self, state: TrainState, train_step, batches: Iterator[dict], signals: StopSignals,
          progress: bool, window: list[dict]) -> TrainState:
    """Trains from `state` to the end or a stop signal. `window`: the per-step metrics since the last log line
    (restored from the checkpoint), so that the next line covers the same steps as in an uninterrupted run."""
    config = self.config
    step = int(state.step)
    first = step
    bar = tqdm(total=self.total_steps, initial=step, desc="train", unit="step", dynamic_ncols=True,
               disable=not progress or jax.process_index() != 0)
    pending: list[dict] = list(window)  # metrics of the steps since the last log line (new ones still on device)
    timer, timed = time.perf_counter(), 0  # steps run by this process since `timer`, the compiling one excluded
    for batch in _take(batches(step), self.total_steps - step):
      state, metrics = train_step(state, sharding.place_batch(batch, self.mesh, config.model))
      step += 1
      pending.append(metrics)
      if step == first + 1:  # the first step compiles: time the throughput from its end
        jax.block_until_ready(metrics)
        timer = time.perf_counter()
      else:
        timed += 1
      stop = signals.should_stop()
      if step % config.log_every == 0 or step == self.total_steps:
        record = self._log_line(step, jax.device_get(pending), time.perf_counter() - timer, timed)
        bar.set_postfix({k: "-" if v is None else f"{v:.4g}" for k, v in record.items() if k not in ("step", "epoch")},
                        refresh=False)
        pending, timer, timed = [], time.perf_counter(), 0
      bar.update(1)
      if config.eval_every and step % config.eval_every == 0:
        self.evaluate(state, "valid", progress=False)
      if step % config.checkpoint_every == 0 or step == self.total_steps or stop:
        pending = jax.device_get(pending)
        self.save(state, step, pending)
      if stop:
        break
    bar.close()
    self.checkpoints.wait()
    return state

  def _log_line(self, step: int, metrics: list[dict], elapsed: float, timed_steps: int) -> dict:
    """Means over the steps since the last line (loss over its finite values); lr and skipped of the last step;
    throughput over the `timed_steps` that took `elapsed` seconds (None when no step was timed)."""
    losses = [m["loss_bits"] for m in metrics if np.isfinite(m["loss_bits"])]
    steps_per_s = timed_steps / elapsed if timed_steps else None
    record = {
        "step": step,
        "epoch": step / self.steps_per_epoch,
        "loss_bits": float(np.mean(losses)) if losses else None,
        "lr": float(metrics[-1]["lr"]),
        "grad_norm": float(np.mean([m["grad_norm"] for m in metrics])),
        "skipped": int(metrics[-1]["skipped"]),
        "tokens_per_s": steps_per_s and steps_per_s * self.config.batch_size * self.seq_len,
        "epochs_per_hour": steps_per_s and steps_per_s * 3600.0 / self.steps_per_epoch,
    }
    self.log.write(record)
    return record

  def evaluate(self, state: TrainState, split: str, progress: bool) -> float:
    """NLL of the EMA weights on a split; logged as {"step", "split", "nll_bits"}."""
    ds = self.splits[split]
    nll = split_nll(self.eval_step, nnx.merge_state(state.ema, state.rngs), self.config.model, ds,
                    self.config.eval_batch_size or self.config.batch_size,
                    seq_len=data.get_spec(self.config.dataset, self.config.data_root).length, mesh=self.mesh,
                    progress=progress)
    self.log.write({"step": int(state.step), "split": split, "nll_bits": nll})
    return nll

  def save(self, state: TrainState, step: int, window: list[dict]) -> None:
    self.checkpoints.save(step, state.items(), checkpoint_meta(self.config, step, self.steps_per_epoch, window))


def checkpoint_meta(config: TrainConfig, step: int, steps_per_epoch: int, window: list[dict] = ()) -> dict:
  """What a checkpoint records beside the arrays: the step, the data position (epoch, index of the next batch
  within it), the full config and the per-step metrics of the steps since the last log line (`window`, exact:
  non-finite values as strings)."""
  epoch, batch_index = divmod(step, steps_per_epoch)
  as_json = lambda v: float(v) if math.isfinite(v) else str(float(v))
  log_window = [{k: as_json(m[k]) for k in STEP_METRICS} for m in window]
  return {"step": step, "epoch": epoch, "batch_index": batch_index, "config": config.to_dict(),
          "log_window": log_window}


def log_window(meta: dict) -> list[dict]:
  """The per-step metrics a checkpoint's meta carries (`checkpoint_meta`), as the float32 / int32 values logged."""
  return [{k: cast(float(m[k])) for k, cast in STEP_METRICS.items()} for m in meta.get("log_window", [])]


def _epoch_batches(config: TrainConfig, ds, seq_len: int, steps_per_epoch: int):
  """step -> iterator over the training batches from that step on, epoch after epoch (this host's rows)."""

  def from_step(step: int) -> Iterator[dict]:
    epoch, start = divmod(step, steps_per_epoch)
    while True:
      yield from data.batches(ds, config.batch_size, seq_len, seed=config.seed, epoch=epoch, start=start,
                              crop=config.crop, shard_index=jax.process_index(), shard_count=jax.process_count())
      epoch, start = epoch + 1, 0

  return from_step


def _take(iterator: Iterator, n: int) -> Iterator:
  for _, item in zip(range(n), iterator):
    yield item


def _initial_or_resumed_state(config: TrainConfig, optimizer: optax.GradientTransformation, mesh: Mesh,
                              checkpoints: Checkpoints, steps_per_epoch: int,
                              log: MetricsLog) -> tuple[TrainState, list[dict]]:
  """The state of the newest checkpoint, else a fresh one, replicated on the mesh, and the per-step metrics since
  the last log line. Drops metrics logged after that checkpoint (by a run that died before its next one)."""
  step = checkpoints.latest_step()
  if step is None:
    log.truncate_after(0)
    return sharding.replicate(init_state(config, optimizer), mesh), []
  abstract = jax.eval_shape(lambda: init_state(config, optimizer).items())
  replicated = sharding.replicated(mesh)
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated), abstract)
  items, meta = checkpoints.restore(abstract, step)
  if (meta["epoch"], meta["batch_index"]) != divmod(step, steps_per_epoch):
    raise CheckpointError(
        f"checkpoint {step} was written at epoch {meta['epoch']}, batch {meta['batch_index']}, but with the "
        f"current training split ({steps_per_epoch} batches per epoch) step {step} is at "
        f"{divmod(step, steps_per_epoch)}: the dataset changed since; resume with the same data or use a new "
        f"--workdir")
  log.truncate_after(step)
  return TrainState.from_items(items), log_window(meta)


def _check_checkpoint_config(checkpoints: Checkpoints, config: TrainConfig) -> None:
  """Raises CheckpointError naming the fields in which `config` (from config.json, --config or flags) differs from
  the one the newest checkpoint was written with (apart from RESUMABLE_FIELDS)."""
  step = checkpoints.latest_step()
  if step is None:
    return
  differ = config_differences(checkpoints.run_config(step), config, RESUMABLE_FIELDS, RESUMABLE_MODEL_FIELDS)
  if differ:
    workdir = checkpoints.directory.parent
    raise CheckpointError(
        f"the config differs from the one checkpoint {checkpoints.directory / str(step)} was written with "
        f"({'; '.join(differ)}): was {workdir / 'config.json'} edited? Resume with the checkpoint's settings or "
        f"start a new run in another --workdir")


def _check_resumable(saved: TrainConfig | None, config: TrainConfig, workdir: Path) -> None:
  """Raises CheckpointError when `workdir` holds a different run (fields outside RESUMABLE_FIELDS differ)."""
  if saved is None:
    return
  differ = config_differences(saved, config, RESUMABLE_FIELDS, RESUMABLE_MODEL_FIELDS)
  if differ:
    raise CheckpointError(f"{workdir} holds a different run ({'; '.join(differ)}); resume it with its own settings "
                          f"(see {workdir / 'config.json'}) or use a new --workdir")


def logged_test_nll(workdir: str | Path, step: int) -> float | None:
  """The test NLL logged in WORKDIR/metrics.jsonl at `step` by a run that finished there, if any."""
  for record in reversed(read_metrics(workdir)):
    if record.get("split") == "test" and record["step"] == step:
      return record["nll_bits"]
  return None
