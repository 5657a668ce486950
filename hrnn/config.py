"""Every setting of hrnn, defined once: the model, its named presets and the paper's ablation variants, the run
scales of the notebooks, and a training run.

  ModelConfig, PRESETS, get_preset(name)        the architecture; presets are frozen ModelConfigs
  VARIANTS, apply_variant(cfg, name)            the paper's ablations as changes of any base model
  Scale, SCALES, get_scale(name, **overrides)   how big every experiment runs: smoke, cpu, workstation, paper
  model_config(scale, variant)                  a scale's base model turned into an ablation variant
  TrainConfig, train_config(...)                one training run; `train_config` is the one function that derives
                                                it from a preset or scale, a variant and a dataset
  TrainConfig.override(**changes)               any TrainConfig or ModelConfig field changed (what CLI flags do)

Everything is a frozen dataclass; variants derive with `dataclasses.replace`. Every field is validated in
`__post_init__`, so a bad configuration fails at construction naming the field, and carries its help text in
`metadata["help"]`, from which `hrnn train --help` is generated. This module imports no JAX (the command line
reads it to build its flags).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Callable, Literal

from hrnn.data.specs import get_spec
from hrnn.errors import HrnnError

Embedding = Literal["sinusoidal", "linear", "learned", "learned-dropout"]
EMBEDDINGS: tuple[str, ...] = typing.get_args(Embedding)
# hrnn.ops.scan.linear_recurrence backends (hrnn.ops.scan documents each).
ScanBackend = Literal["linear", "associative", "chunked", "pallas"]
SCAN_BACKENDS: tuple[str, ...] = typing.get_args(ScanBackend)
# What the backward pass recomputes instead of storing (hrnn.model.blocks): nothing; each CG-LRU (its complex gates,
# coefficients and states); each residual block; each temporal stack, with its blocks recomputed inside.
Remat = Literal["none", "recurrence", "block", "stack"]
REMAT_POLICIES: tuple[str, ...] = typing.get_args(Remat)
Schedule = Literal["constant", "cosine"]
SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)


class ConfigError(HrnnError, ValueError):
  """A configuration field has an invalid value, or a name (preset, scale, variant, field) is unknown; the message
  names it."""


def _field(default, help: str, **metadata):
  """A dataclass field with its help text (shown by `hrnn train --help`)."""
  return dataclasses.field(default=default, metadata={"help": help, **metadata})


# ---------------------------------------------------------------------------------------------------- the model


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """HarmonicRNN architecture (docs/model.md).

  The U-Net has `len(pool_factors)` pooling levels (outer -> inner) and one innermost stack. `blocks[i]` is the
  number of temporal blocks (one recurrent + one MLP residual block) on *each* of the down and up paths of level i;
  `blocks[-1]` is the innermost stack. The paper: pool factors (2, 4, 4, 5), 4 temporal blocks everywhere,
  4 * (4 + 4) + 4 = 36 temporal blocks.
  """

  width: int = _field(128, "d: feature width at every level")
  lru_width: int = _field(256, "n_h: real width of the CG-LRU input (n_h / 2 complex channels)")
  pool_factors: tuple[int, ...] = _field((2, 4, 4, 5), "pooling factor of each level, outer -> inner")
  blocks: tuple[int, ...] = _field((4, 4, 4, 4, 4), "temporal blocks per path of each level, innermost last")
  pool_groups: int | None = _field(None, "feature groups of the pooling convs; none = width (depthwise)")
  embedding: Embedding = _field("sinusoidal", "input embedding of the tokens")
  embedding_dropout: float = _field(0.2, "dropout of the learned-dropout embedding")
  dropout: float = _field(0.2, "residual dropout")
  gate_blocks: int = _field(32, "blocks of the block-diagonal gate projections of the CG-LRU")
  r_min: float = _field(0.9, "lower end of the init range of each channel's decay r")
  r_max: float = _field(0.99, "upper end of the init range of each channel's decay r")
  max_phase: float = _field(0.1 * math.pi, "init phases theta ~ U[0, max_phase]")
  num_classes: int = _field(256, "token classes (8-bit audio)")
  scan_backend: ScanBackend | None = _field(None, "backend of the linear recurrences; none = the platform's default")
  remat: Remat = _field("none", "what the backward pass recomputes instead of storing (less memory, more compute)")
  remat_chunk: int | None = _field(
      None, "with remat block or stack: run each temporal block over time chunks of at most this many steps of its "
      "level, each recomputed, so that its transients are one chunk's (minute-long sequences); none = whole "
      "sequences")

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
    if isinstance(self.remat, bool):  # the on/off form of older configs
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
    """Residual-branch count of a level, which scales its output-layer inits (paper: 17 pooled, 8 innermost)."""
    residual = 2 * 2 * self.blocks[level] if level < len(self.pool_factors) else 2 * self.blocks[level]
    return residual + (1 if level < len(self.pool_factors) else 0)


def _one_pool(cfg: ModelConfig) -> dict:
  # A single pooling level of factor 2 holding the base model's temporal blocks: 1/3 on each path outside, the rest
  # inside (the paper: 12 + 12 outside and 12 inside of 36).
  outer = round(cfg.temporal_blocks / 3)
  return {"pool_factors": (2,), "blocks": (outer, cfg.temporal_blocks - 2 * outer)}


VARIANTS: dict[str, Callable[[ModelConfig], dict]] = {
    # The paper's ablations, each as the field changes it makes to a base model.
    "baseline": lambda cfg: {},
    "groups4": lambda cfg: {"pool_groups": 4},  # Table 1: pooling-conv feature groups
    "dense": lambda cfg: {"pool_groups": 1},
    "one-pool": _one_pool,  # Table 2: one pooling level, or none (every temporal block at full rate)
    "no-pool": lambda cfg: {"pool_factors": (), "blocks": (cfg.temporal_blocks,)},
    "linear-embed": lambda cfg: {"embedding": "linear"},  # Fig. 2: input embeddings
    "learned-embed": lambda cfg: {"embedding": "learned"},
    "learned-embed-dropout": lambda cfg: {"embedding": "learned-dropout"},
}


def apply_variant(cfg: ModelConfig, name: str) -> ModelConfig:
  """`cfg` turned into the paper's ablation variant `name` (a key of VARIANTS)."""
  if name not in VARIANTS:
    raise ConfigError(f"unknown model variant {name!r}; known: {', '.join(VARIANTS)}")
  return dataclasses.replace(cfg, **VARIANTS[name](cfg))


_PAPER = ModelConfig()  # paper section 4.2: 7,272,704 parameters

PRESETS: dict[str, ModelConfig] = {
    "paper": _PAPER,
    # The paper's ablation variants of the paper model, under the names of its tables.
    **{name: apply_variant(_PAPER, v) for name, v in (
        ("paper-groups4", "groups4"), ("paper-dense", "dense"), ("one-pool", "one-pool"), ("no-pool", "no-pool"),
        ("paper-linear-embed", "linear-embed"), ("paper-learned-embed", "learned-embed"),
        ("paper-learned-embed-dropout", "learned-embed-dropout"))},
    # CPU-sized: same structure (four pooling levels, CG-LRU, depthwise groups), fewer and narrower blocks.
    "cpu": dataclasses.replace(_PAPER, width=64, lru_width=128, gate_blocks=16, blocks=(1, 1, 1, 1, 2),
                               dropout=0.0),
    "smoke": dataclasses.replace(_PAPER, width=16, lru_width=32, gate_blocks=4, blocks=(1, 1, 1, 1, 1),
                                 dropout=0.0),
}
"""Named model presets."""


def get_preset(name: str) -> ModelConfig:
  """Returns the named preset, or raises `ConfigError` listing the known names."""
  try:
    return PRESETS[name]
  except KeyError:
    raise ConfigError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


SAMPLE_BATCH = 32
"""Streams generated per compiled call unless a caller says otherwise (`hrnn sample`, the notebooks' clips): on a
CPU the sampler's throughput grows with the batch up to about this size."""


# ---------------------------------------------------------------------------------------------------- run scales


@dataclasses.dataclass(frozen=True)
class Scale:
  """How big every experiment of the notebooks runs.

  Training lengths are in optimizer steps when `epochs` is None, else in epochs over the training split.
  `seq_len` crops SC09 training examples (None = whole 16,000-token clips); `music_seq_len` crops Beethoven /
  YouTubeMix (None = whole 8 s / 1 min clips). Evaluation always uses whole test examples. To add a scale, add an
  entry to SCALES.
  """

  name: str
  model: str  # base ModelConfig preset
  sc09: str  # dataset of the SC09 experiments (Fig. 2, Tables 1-3, FID/IS)
  beethoven: str  # Table 4
  youtubemix: str
  sc09_size: str  # size of an embedded SC09 stand-in (hrnn.data.prepare); ignored for real datasets
  music_size: str  # size of the embedded Beethoven / YouTubeMix stand-ins
  steps: int | None  # training steps of an SC09 run (None: use epochs)
  epochs: int | None  # training epochs of a run (None: use steps)
  music_steps: int | None  # training steps of a Beethoven / YouTubeMix run (None: use epochs)
  batch_size: int  # training batch; also the generation batch, as in the paper's throughput measurements
  seq_len: int | None
  music_seq_len: int | None
  eval_every: int  # steps between validation evaluations (the curves of Fig. 2)
  music_eval_batch: int | None  # evaluation batch of whole music clips (None: batch_size); 1 bounds CPU memory
  music_mesh_seq: int  # devices along the time axis of music runs (context parallelism for minute-long clips)
  ema_decay: float  # EMA of the weights (paper 0.999: a horizon of ~1,000 steps, longer than a CPU run)
  n_samples: int  # generated SC09 clips scored by FID / IS / mIS / AM (the classifier metrics need >= 10)
  sample_tokens: int | None  # tokens per generated SC09 clip (None: the dataset's 16,000, one second)
  music_sample_tokens: int  # tokens per generated Beethoven / YouTubeMix sample
  likelihood_band: bool  # score only SaShiMi's selection: the 40%..95% likelihood band of a seeded random half
  classifier_size: str | None  # hrnn.metrics classifier size; None = SaShiMi's on a GPU, "cpu" otherwise
  classifier_epochs: int  # training epochs of the SC09 digit classifier
  listen: int  # samples per model shown and played in the notebooks
  xla_flags: str = ""  # added to $XLA_FLAGS of the notebook kernels by `hrnn reproduce`
  seed: int = 0
  seeds: int = 1  # training seeds (seed, seed + 1, ...) per model wherever the notebooks compare models' NLL
  warmup_steps: int | None = None  # learning-rate warm-up; None: train_config's (at most 1,000, a tenth of a run)

  def __post_init__(self):
    if (self.steps is None) == (self.epochs is None):
      raise ConfigError(f"scale {self.name!r}: give exactly one of steps={self.steps} and epochs={self.epochs}")
    for field in ("batch_size", "eval_every", "music_mesh_seq", "n_samples", "music_sample_tokens", "classifier_epochs",
                  "listen", "seeds"):
      if getattr(self, field) <= 0:
        raise ConfigError(f"scale {self.name!r}: {field}={getattr(self, field)} must be positive")

  @property
  def datasets(self) -> tuple[str, str, str]:
    return self.sc09, self.beethoven, self.youtubemix


# `make reproduce`: small models that clearly learn, embedded datasets, on 2 CPU cores.
_CPU = Scale(
    name="cpu", model="cpu", sc09="sc09-espeak", beethoven="beethoven-piano", youtubemix="piano-minute",
    sc09_size="small", music_size="small",
    # 3 seeds per compared model (24 SC09 runs, 9 scored sample sets of 32 clips): 60 steps of 1,600-token crops,
    # validation only at the end (a whole-clip evaluation of the no-pool model costs a third of its training).
    # Sized for `make reproduce` within an hour on 2 cores: it took 58 minutes (100 steps: 75; 160 steps of 2,000
    # tokens with a validation half-way: over two hours). At 60 steps the embeddings' mean training NLL already
    # orders as in Fig. 2 and every model is well below the token-histogram entropy. EMA 0.85: the EMA starts at
    # the initial weights, which keep a share decay**steps of it; at 0.98 that was 30% after 60 steps (62% after
    # the 24 music steps), and the evaluated NLL measured mostly that share (baseline test NLL 6.69 bits with the
    # EMA, 5.90 with the raw weights); at 0.85 it is under 0.01% (2% for music).
    steps=60, epochs=None, music_steps=24, batch_size=4, seq_len=1600, music_seq_len=16000, eval_every=60,
    music_eval_batch=1, music_mesh_seq=1, ema_decay=0.85,
    n_samples=32, sample_tokens=None, music_sample_tokens=64000, likelihood_band=False,
    classifier_size=None, classifier_epochs=30, listen=4, seeds=3)

SCALES: dict[str, Scale] = {
    # Every notebook in seconds: tiny models, a few steps, tiny embedded datasets (checks the plumbing).
    "smoke": Scale(
        name="smoke", model="smoke", sc09="sc09-espeak", beethoven="beethoven-piano", youtubemix="piano-minute",
        sc09_size="tiny", music_size="tiny",
        steps=4, epochs=None, music_steps=2, batch_size=4, seq_len=1600, music_seq_len=1600, eval_every=2,
        music_eval_batch=1, music_mesh_seq=1, ema_decay=0.5,
        n_samples=12, sample_tokens=1600, music_sample_tokens=1600, likelihood_band=False,
        classifier_size="tiny", classifier_epochs=1, listen=2,
        # Smoke runs are all compilation: unoptimised code compiles in 2/3 of the time (and runs 2x slower).
        xla_flags="--xla_backend_optimization_level=0"),
    "cpu": _CPU,
    # The `cpu` model trained for hours on the full embedded SC09 stand-in: the learning curve of sample quality
    # (results/workstation; ~3 hours per model on 2 CPU cores). Validation (808 whole clips) every 2,000 steps; a
    # short warm-up, so that the first hours count; one seed.
    "workstation": dataclasses.replace(
        _CPU, name="workstation", sc09_size="full", steps=20000, seq_len=4000, eval_every=2000, ema_decay=0.995,
        n_samples=256, listen=8, seeds=1, warmup_steps=200),
    # The paper: 7.3M-parameter models, the real SC09 / Beethoven / YouTubeMix, 500 epochs, 10,240 samples.
    "paper": Scale(
        name="paper", model="paper", sc09="sc09", beethoven="beethoven", youtubemix="youtubemix",
        sc09_size="full", music_size="full",
        steps=None, epochs=500, music_steps=None, batch_size=32, seq_len=None, music_seq_len=None, eval_every=1000,
        music_eval_batch=None, music_mesh_seq=1, ema_decay=0.999,
        n_samples=10240, sample_tokens=None, music_sample_tokens=960_000, likelihood_band=True,
        classifier_size=None, classifier_epochs=20, listen=8),
}
"""Run scales by name."""


def get_scale(name: str, **overrides) -> Scale:
  """The named scale with `overrides` applied; overrides that are None are ignored (notebook parameters use None
  for "the scale's default")."""
  if name not in SCALES:
    raise ConfigError(f"unknown run scale {name!r}; known: {', '.join(SCALES)}")
  overrides = {k: v for k, v in overrides.items() if v is not None}
  unknown = set(overrides) - {f.name for f in dataclasses.fields(Scale)}
  if unknown:
    raise ConfigError(f"unknown scale field(s) {', '.join(sorted(unknown))}")
  return dataclasses.replace(SCALES[name], **overrides)


def model_config(scale: Scale, name: str = "baseline") -> ModelConfig:
  """The scale's base model turned into the ablation variant `name` (at `paper` scale: the named paper presets)."""
  return apply_variant(get_preset(scale.model), name)


# ---------------------------------------------------------------------------------------------------- training


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run: the model, the data, the optimiser and the bookkeeping.

  The defaults are the paper's: AdamW (lr 0.002, weight decay 1e-4, b1 0.9, b2 0.999), linear warm-up over 1,000
  steps then constant, global-norm clipping at 200, an update skipped when the loss is not finite or the gradient
  norm is >= 1000, EMA of the weights at 0.999, batch 32 of whole padded examples, 500 epochs.
  `train_config(preset, dataset, scale=...)` builds one at a run scale. `model.remat` and `model.scan_backend`
  change memory and speed, never the function computed.

  Lengths: exactly one of `steps` (optimizer steps) and `epochs` is set. `batch_size` is the global batch: it is
  split over hosts and devices along the mesh's data axis and into `grad_accum` micro-batches.
  """

  model: ModelConfig = _field(_PAPER, "the architecture")
  preset: str = _field("paper", "name of the preset the model derives from (recorded for reports)")
  dataset: str = _field("sc09", "dataset name (hrnn data info lists them)")
  data_root: str | None = _field(None, "data root; none = $HRNN_DATA or ~/.cache/hrnn/data")
  minmax_unit: int | None = _field(None, "samples per min-max scaling unit of the tokens; none = each example as a "
                                   "whole (as the paper); 131072 = SaShiMi's YouTubeMix chunks")
  batch_size: int = _field(32, "global batch (all devices, hosts and micro-batches)")
  seq_len: int | None = _field(None, "tokens per training example; none = the dataset's whole examples")
  crop: bool = _field(False, "random crops of seq_len tokens instead of each example's first seq_len tokens")
  steps: int | None = _field(None, "optimizer steps of the whole run (replaces epochs)")
  epochs: int | None = _field(500, "epochs of the whole run (replaces steps)")
  learning_rate: float = _field(2e-3, "peak learning rate", aliases=("--lr",))
  weight_decay: float = _field(1e-4, "AdamW weight decay")
  b1: float = _field(0.9, "AdamW beta 1")
  b2: float = _field(0.999, "AdamW beta 2")
  warmup_steps: int = _field(1000, "linear warm-up steps from 0 to the learning rate")
  schedule: Schedule = _field("constant", "learning rate after warm-up: constant, or cosine decay to 0 at the end")
  clip_norm: float = _field(200.0, "global gradient-norm clipping")
  skip_norm: float = _field(1000.0, "skip an update when the gradient norm is >= this (or the loss not finite)")
  ema_decay: float = _field(0.999, "decay of the EMA of the weights (evaluation and sampling use the EMA)")
  grad_accum: int = _field(1, "micro-batches per optimizer step")
  seed: int = _field(0, "parameter init, dropout and data order")
  mesh_data: int | None = _field(None, "devices along the batch axis; none = all devices / mesh_seq")
  mesh_seq: int = _field(1, "devices along the time axis (context parallelism)")
  checkpoint_every: int = _field(1000, "steps between checkpoints (also saved on SIGTERM/SIGINT and at the end)")
  keep_checkpoints: int = _field(3, "newest checkpoints kept")
  eval_every: int | None = _field(None, "steps between validation NLL evaluations; none = only the final test NLL")
  eval_batch_size: int | None = _field(None, "evaluation batch; none = batch_size")
  log_every: int = _field(10, "steps between metrics lines")

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

  def override(self, **changes) -> TrainConfig:
    """This config with `changes` to any TrainConfig or ModelConfig field (the two share no field name).

    Setting `steps` clears `epochs` and vice versa (unless both are set); unknown names raise ConfigError."""
    model_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(changes) - model_fields - {f.name for f in dataclasses.fields(TrainConfig)})
    if unknown:
      raise ConfigError(f"unknown TrainConfig or ModelConfig field(s) {', '.join(unknown)}")
    changes = dict(changes)
    for length, other in (("steps", "epochs"), ("epochs", "steps")):
      if changes.get(length) is not None and other not in changes:
        changes[other] = None
    model = {k: changes.pop(k) for k in list(changes) if k in model_fields}
    if model:
      changes["model"] = dataclasses.replace(changes.get("model", self.model), **model)
    return dataclasses.replace(self, **changes)

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


def train_config(preset: str | None = None, dataset: str | None = None, *, scale: str | Scale | None = None,
                 variant: str = "baseline", **overrides) -> TrainConfig:
  """The TrainConfig of model `preset` (its ablation `variant`) trained on `dataset` at a run scale.

  Args:
    preset: a model preset; None = the scale's model.
    dataset: a dataset name; None = the scale's SC09 dataset.
    scale: a Scale or the name of one; None = the one named like the preset, else "paper".
    variant: an ablation of the preset (VARIANTS).
    overrides: any TrainConfig or ModelConfig field (`TrainConfig.override`).

  The scale gives the batch size, the length of the run, the sequence length (crops shorter than the dataset's
  examples are random), the evaluation interval, the EMA decay and the seed. Music datasets (not in SC09's layout)
  use the scale's music_* values and are evaluated on the test split only (whole minute-long clips are costly).
  A run in steps warms up over at most a tenth of them (the paper's 1,000 would exceed a short run).
  """
  if not isinstance(scale, Scale):
    scale = get_scale(scale or (preset if preset in SCALES else "paper"))
  preset = preset or scale.model
  dataset = dataset or scale.sc09
  spec = get_spec(dataset, overrides.get("data_root"))
  music = spec.layout != "sc09"
  steps = scale.music_steps if music and scale.music_steps is not None else scale.steps
  seq_len = scale.music_seq_len if music else scale.seq_len
  config = TrainConfig(
      model=apply_variant(get_preset(preset), variant), preset=preset, dataset=dataset,
      batch_size=scale.batch_size, seq_len=seq_len, crop=seq_len is not None and seq_len < spec.length,
      steps=steps, epochs=None if steps is not None else scale.epochs, eval_every=None if music else scale.eval_every,
      eval_batch_size=scale.music_eval_batch if music else None, mesh_seq=scale.music_mesh_seq if music else 1,
      ema_decay=scale.ema_decay, seed=scale.seed,
      log_every=min(10, max(1, (steps or 10_000) // 20))).override(**overrides)  # >= ~20 points on a curve
  if "warmup_steps" not in overrides and scale.warmup_steps is not None:
    config = dataclasses.replace(config, warmup_steps=scale.warmup_steps)
  elif "warmup_steps" not in overrides and config.steps is not None:
    config = dataclasses.replace(config, warmup_steps=min(TrainConfig.warmup_steps, max(1, config.steps // 10)))
  return config
