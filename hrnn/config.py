"""Model configurations and named presets.

A `ModelConfig` fully determines the HarmonicRNN architecture (reference.md section 1). Presets are frozen
dataclasses looked up by name with `get_preset`; `dataclasses.replace` derives variants. Every field is validated
in `__post_init__` so that a bad configuration fails at construction, naming the offending field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from hrnn.errors import HrnnError

Embedding = Literal["sinusoidal", "linear", "learned", "learned-dropout"]
EMBEDDINGS: tuple[str, ...] = ("sinusoidal", "linear", "learned", "learned-dropout")
# hrnn.scan.linear_recurrence backends (hrnn.scan documents each).
SCAN_BACKENDS: tuple[str, ...] = ("linear", "associative", "chunked", "pallas")
# What the backward pass recomputes instead of storing (hrnn.blocks): nothing; each CG-LRU (its complex gates,
# coefficients and states); each residual block; each temporal stack, with its blocks recomputed inside.
REMAT_POLICIES: tuple[str, ...] = ("none", "recurrence", "block", "stack")


class ConfigError(HrnnError, ValueError):
  """A configuration field has an invalid value; the message names the field."""


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """HarmonicRNN architecture.

  The U-Net has `len(pool_factors)` pooling levels (outer -> inner) and one innermost stack. `blocks[i]` is the
  number of temporal blocks (one recurrent + one MLP residual block) on *each* of the down and up paths of level i;
  `blocks[-1]` is the innermost stack. The paper: pool factors (2, 4, 4, 5), 4 temporal blocks everywhere,
  4 * (4 + 4) + 4 = 36 temporal blocks.
  """

  width: int = 128  # d: feature width at every level
  lru_width: int = 256  # n_h: real width of the CG-LRU input; n_h / 2 complex channels
  pool_factors: tuple[int, ...] = (2, 4, 4, 5)  # outer -> inner
  blocks: tuple[int, ...] = (4, 4, 4, 4, 4)  # temporal blocks per path per level, innermost last
  pool_groups: int | None = None  # feature groups of the pooling convs; None = width (depthwise, "diagonal")
  embedding: Embedding = "sinusoidal"
  embedding_dropout: float = 0.2  # only for embedding="learned-dropout"
  dropout: float = 0.2  # residual dropout (authors' training script)
  gate_blocks: int = 32  # blocks of the block-diagonal gate projections in the CG-LRU
  r_min: float = 0.9  # init range of the per-channel decay r = exp(-softplus(Lambda))
  r_max: float = 0.99
  max_phase: float = 0.1 * math.pi  # theta ~ U[0, max_phase]
  num_classes: int = 256  # 8-bit tokens
  scan_backend: str | None = None  # hrnn.scan.linear_recurrence backend; None = platform default
  remat: str = "none"  # one of REMAT_POLICIES (True/False mean "block"/"none"): memory for compute on long inputs
  # With remat "block" or "stack": each temporal block (recurrent + MLP pair) runs over time chunks of at most this
  # many steps of its own level, each recomputed in the backward pass, so that its transients are one chunk's.
  # None: whole sequences.
  remat_chunk: int | None = None

  def __post_init__(self):
    def fail(field: str, why: str):
      raise ConfigError(f"ModelConfig.{field}={getattr(self, field)!r}: {why}")

    for field in ("width", "lru_width", "gate_blocks", "num_classes"):
      if not isinstance(getattr(self, field), int) or getattr(self, field) <= 0:
        fail(field, "must be a positive integer")
    if self.width % 2:
      fail("width", "must be even (sinusoidal embedding uses width/2 frequencies)")
    if self.lru_width % 2:
      fail("lru_width", "must be even (half real, half imaginary parts)")
    if self.lru_width % self.gate_blocks or (self.lru_width // 2) % self.gate_blocks:
      fail("gate_blocks", f"must divide lru_width={self.lru_width} and lru_width/2={self.lru_width // 2}")
    if any((not isinstance(p, int)) or p < 2 for p in self.pool_factors):
      fail("pool_factors", "every pool factor must be an integer >= 2")
    if len(self.blocks) != len(self.pool_factors) + 1:
      fail("blocks", f"needs one entry per pooling level plus the innermost stack "
                     f"({len(self.pool_factors) + 1} entries for pool_factors={self.pool_factors})")
    if any((not isinstance(b, int)) or b < 0 for b in self.blocks):
      fail("blocks", "entries must be non-negative integers")
    if self.groups <= 0 or self.width % self.groups:
      fail("pool_groups", f"must be a positive divisor of width={self.width}")
    if self.embedding not in EMBEDDINGS:
      fail("embedding", f"must be one of {EMBEDDINGS}")
    if self.scan_backend is not None and self.scan_backend not in SCAN_BACKENDS:
      fail("scan_backend", f"must be None (platform default) or one of {SCAN_BACKENDS}")
    if isinstance(self.remat, bool):  # the on/off form of older configs and the --remat flag
      object.__setattr__(self, "remat", "block" if self.remat else "none")
    if self.remat not in REMAT_POLICIES:
      fail("remat", f"must be one of {REMAT_POLICIES}")
    if self.remat_chunk is not None:
      if not isinstance(self.remat_chunk, int) or isinstance(self.remat_chunk, bool) or self.remat_chunk <= 0:
        fail("remat_chunk", "must be None or a positive integer (time steps per chunk)")
      if self.remat not in ("block", "stack"):
        fail("remat_chunk", f"chunks are units of recomputation: needs remat 'block' or 'stack' (remat={self.remat!r})")
    for field in ("dropout", "embedding_dropout"):
      if not 0.0 <= getattr(self, field) < 1.0:
        fail(field, "must be in [0, 1)")
    if not 0.0 < self.r_min < self.r_max < 1.0:
      fail("r_min", f"need 0 < r_min < r_max < 1 (r_max={self.r_max})")
    if not (math.isfinite(self.max_phase) and self.max_phase > 0):
      fail("max_phase", "must be a finite positive angle (radians)")

  @property
  def groups(self) -> int:
    """Feature groups of the pooling convolutions (width when depthwise)."""
    return self.width if self.pool_groups is None else self.pool_groups

  @property
  def total_pool(self) -> int:
    """Product of the pool factors: sequence lengths are padded to a multiple of this inside the model."""
    return math.prod(self.pool_factors)

  @property
  def temporal_blocks(self) -> int:
    """Number of (recurrent, MLP) pairs in the whole network."""
    return 2 * sum(self.blocks[:-1]) + self.blocks[-1]

  @property
  def level_rates(self) -> tuple[int, ...]:
    """Downsampling factor of each level relative to the data rate, outer -> innermost (1, 2, 8, 32, 160)."""
    rates = [1]
    for p in self.pool_factors:
      rates.append(rates[-1] * p)
    return tuple(rates)

  def num_blocks(self, level: int) -> int:
    """Residual-branch count of a level, used to scale output-layer inits (reference: 17 pooled, 8 innermost)."""
    residual = 2 * 2 * self.blocks[level] if level < len(self.pool_factors) else 2 * self.blocks[level]
    return residual + (1 if level < len(self.pool_factors) else 0)


_PAPER = ModelConfig()

PRESETS: dict[str, ModelConfig] = {
    # Paper section 4.2 / reference.md section 1: 7,272,704 parameters.
    "paper": _PAPER,
    # Table 1: pooling-conv feature groups.
    "paper-groups4": dataclasses.replace(_PAPER, pool_groups=4),
    "paper-dense": dataclasses.replace(_PAPER, pool_groups=1),
    # Table 2: one pooling layer (p=2, 24 temporal blocks outside, 12 inside) and no pooling (36 at full rate).
    "one-pool": dataclasses.replace(_PAPER, pool_factors=(2,), blocks=(12, 12)),
    "no-pool": dataclasses.replace(_PAPER, pool_factors=(), blocks=(36,)),
    # Fig. 2: input-embedding ablation.
    "paper-linear-embed": dataclasses.replace(_PAPER, embedding="linear"),
    "paper-learned-embed": dataclasses.replace(_PAPER, embedding="learned"),
    "paper-learned-embed-dropout": dataclasses.replace(_PAPER, embedding="learned-dropout"),
    # CPU-sized: same structure (four pooling levels, CG-LRU, depthwise groups), fewer and narrower blocks.
    "cpu": dataclasses.replace(_PAPER, width=64, lru_width=128, gate_blocks=16, blocks=(1, 1, 1, 1, 2),
                               dropout=0.0),
    "smoke": dataclasses.replace(_PAPER, width=16, lru_width=32, gate_blocks=4, blocks=(1, 1, 1, 1, 1),
                                 dropout=0.0),
}
"""Named presets. Derive ablation variants of a small preset with `dataclasses.replace`."""


def get_preset(name: str) -> ModelConfig:
  """Returns the named preset, or raises `ConfigError` listing the known names."""
  try:
    return PRESETS[name]
  except KeyError:
    raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


Schedule = Literal["constant", "cosine"]
SCHEDULES: tuple[str, ...] = ("constant", "cosine")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run (reference.md section 2): the model, the data, the optimiser and the bookkeeping.

  The defaults are the paper's: AdamW (lr 0.002, weight decay 1e-4, b1 0.9, b2 0.999), linear warm-up over 1,000
  steps then constant, global-norm clipping at 200, an update skipped when the loss is not finite or the gradient
  norm is >= 1000, EMA of the weights at 0.999, batch 32 of whole padded examples, 500 epochs.
  `train_config(preset, dataset)` builds one at a named run scale (smoke, cpu, paper; see hrnn.scales).
  `model.remat` and `model.scan_backend` change memory and speed, never the function computed.

  Lengths: exactly one of `steps` (optimizer steps) and `epochs` is set. `batch_size` is the global batch: it is
  split over hosts and devices along the mesh's data axis and into `grad_accum` micro-batches.
  """

  model: ModelConfig = _PAPER
  preset: str = "paper"  # name of the preset `model` derives from (recorded for reports)
  dataset: str = "sc09"  # a name of hrnn.data.DATASETS
  data_root: str | None = None  # None = $HRNN_DATA or ~/.cache/hrnn/data
  batch_size: int = 32
  seq_len: int | None = None  # tokens per training example; None = the dataset's whole example length
  crop: bool = False  # random crops of seq_len tokens instead of each example's first seq_len tokens
  steps: int | None = None
  epochs: int | None = 500
  learning_rate: float = 2e-3
  weight_decay: float = 1e-4
  b1: float = 0.9
  b2: float = 0.999
  warmup_steps: int = 1000  # linear warm-up from 0 to learning_rate
  schedule: Schedule = "constant"  # after warm-up: constant, or cosine decay to 0 at the last step
  clip_norm: float = 200.0  # global gradient-norm clipping
  skip_norm: float = 1000.0  # skip the update when the gradient norm is >= this (or the loss is not finite)
  ema_decay: float = 0.999
  grad_accum: int = 1  # micro-batches per optimizer step
  seed: int = 0  # parameter init, dropout and data order
  mesh_data: int | None = None  # devices along the batch axis; None = all devices / mesh_seq
  mesh_seq: int = 1  # devices along the time axis (context parallelism)
  checkpoint_every: int = 1000  # steps between checkpoints (also saved on SIGTERM/SIGINT and at the end)
  keep_checkpoints: int = 3
  eval_every: int | None = None  # steps between validation-NLL evaluations; None = only the final test NLL
  eval_batch_size: int | None = None  # None = batch_size
  log_every: int = 10  # steps between metrics lines

  def __post_init__(self):
    def fail(field: str, why: str):
      raise ConfigError(f"TrainConfig.{field}={getattr(self, field)!r}: {why}")

    if not isinstance(self.model, ModelConfig):
      fail("model", "must be a ModelConfig (see hrnn.config.get_preset)")
    if (self.steps is None) == (self.epochs is None):
      fail("steps", f"give exactly one of steps and epochs (epochs={self.epochs!r}), e.g. "
                    f"TrainConfig(steps=N, epochs=None) or train_config(preset, steps=N)")
    for field in ("batch_size", "steps", "epochs", "seq_len", "grad_accum", "mesh_data", "mesh_seq",
                  "checkpoint_every", "keep_checkpoints", "eval_every", "eval_batch_size", "log_every"):
      value = getattr(self, field)
      if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        fail(field, "must be a positive integer")
    if not isinstance(self.warmup_steps, int) or self.warmup_steps < 0:
      fail("warmup_steps", "must be a non-negative integer")
    if self.batch_size % self.grad_accum:
      fail("batch_size", f"must be a multiple of grad_accum={self.grad_accum}")
    for field in ("learning_rate", "clip_norm", "skip_norm"):
      if not (math.isfinite(getattr(self, field)) and getattr(self, field) > 0):
        fail(field, "must be a finite positive number")
    if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
      fail("weight_decay", "must be a finite non-negative number")
    for field in ("b1", "b2", "ema_decay"):
      if not 0.0 <= getattr(self, field) < 1.0:
        fail(field, "must be in [0, 1)")
    if self.schedule not in SCHEDULES:
      fail("schedule", f"must be one of {SCHEDULES}")

  def to_dict(self) -> dict:
    """A JSON-serialisable dict; `TrainConfig.from_dict` inverts it."""
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, values: dict) -> TrainConfig:
    """Inverse of `to_dict` (lists back to tuples); unknown fields raise ConfigError naming them."""
    values = dict(values)
    model = {k: tuple(v) if isinstance(v, list) else v for k, v in values.pop("model", {}).items()}
    for name, fields in (("TrainConfig", values), ("ModelConfig", model)):
      known = {f.name for f in dataclasses.fields(TrainConfig if name == "TrainConfig" else ModelConfig)}
      unknown = sorted(set(fields) - known)
      if unknown:
        raise ConfigError(f"{name}: unknown field(s) {', '.join(unknown)} (written by another hrnn version?)")
    return cls(model=ModelConfig(**model), **values)


def train_config(preset: str = "paper", dataset: str | None = None, *, scale: str | None = None,
                 **overrides) -> TrainConfig:
  """The TrainConfig of model preset `preset` trained at a run scale of `hrnn.scales` (smoke, cpu, paper).

  The scale (default: the one named like the preset, else "paper") gives the dataset (its SC09 one unless
  `dataset` is set), batch size, sequence length, length of the run and evaluation interval; music datasets
  (not in SC09's layout) use the scale's music_* values. `overrides` replace any TrainConfig field; `steps`
  replaces `epochs` and vice versa.
  """
  from hrnn.data.specs import get_spec  # light: no JAX, no datasets
  from hrnn.scales import SCALES, get_scale

  run = get_scale(scale or (preset if preset in SCALES else "paper"))
  dataset = dataset or run.sc09
  music = get_spec(dataset).layout != "sc09"
  steps = run.music_steps if music and run.music_steps is not None else run.steps
  values = dict(model=get_preset(preset), preset=preset, dataset=dataset, batch_size=run.batch_size,
                seq_len=run.music_seq_len if music else run.seq_len, steps=steps,
                epochs=None if steps is not None else run.epochs, eval_every=run.eval_every, seed=run.seed)
  unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)})
  if unknown:
    raise ConfigError(f"train_config: unknown TrainConfig field(s) {', '.join(unknown)}")
  if overrides.get("steps") is not None:
    values["epochs"] = None
  if overrides.get("epochs") is not None:
    values["steps"] = None
  values.update(overrides)
  if "warmup_steps" not in overrides and values["steps"] is not None:
    # Short runs warm up over at most a tenth of their steps (the paper's 1,000 would exceed a smoke run).
    values["warmup_steps"] = min(TrainConfig.warmup_steps, max(1, values["steps"] // 10))
  return TrainConfig(**values)
