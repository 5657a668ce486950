"""Run scales of the notebooks: how big every experiment runs, from a smoke test to the paper's settings.

  smoke   every notebook in seconds: tiny models, a few steps, tiny embedded datasets (checks the plumbing)
  cpu     `make reproduce`: small models that clearly learn, embedded datasets, under an hour on 2 CPU cores
  workstation  the `cpu` model trained for hours on the full embedded SC09 stand-in: the learning curve of
          sample quality (results/workstation; ~3 hours per model on 2 CPU cores)
  paper   the paper: 7.3M-parameter models, the real SC09 / Beethoven / YouTubeMix, 500 epochs, 10,240 samples

A scale names a base model preset; the ablations of each table derive from it with `model_config(scale, variant)`
(at `paper` scale these are exactly the named paper presets). Notebooks take `preset` as a parameter and call
`get_scale(preset, **overrides)`.
"""

from __future__ import annotations

import dataclasses

from hrnn.config import ModelConfig, get_preset
from hrnn.errors import HrnnError

# Model variants of the paper's experiments -> the named paper preset each one corresponds to.
VARIANTS: dict[str, str] = {
    "baseline": "paper",
    "groups4": "paper-groups4",  # Table 1
    "dense": "paper-dense",
    "one-pool": "one-pool",  # Table 2
    "no-pool": "no-pool",
    "linear-embed": "paper-linear-embed",  # Fig. 2
    "learned-embed": "paper-learned-embed",
    "learned-embed-dropout": "paper-learned-embed-dropout",
}


class ScaleError(HrnnError, ValueError):
  """Unknown run scale or model variant, or a bad override."""


@dataclasses.dataclass(frozen=True)
class Scale:
  """Everything that changes between a smoke run, a CPU run and the paper's runs.

  Training lengths are in optimizer steps when `epochs` is None, else in epochs over the training split.
  `seq_len` crops SC09 training examples (None = whole 16,000-token clips); `music_seq_len` crops Beethoven /
  YouTubeMix (None = whole 8 s / 1 min clips). Evaluation always uses whole test examples.
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
  likelihood_band: bool  # score only SaShiMi's 40%..95% band of the samples ranked by likelihood
  classifier_size: str | None  # hrnn.metrics classifier size; None = SaShiMi's on a GPU, "cpu" otherwise
  classifier_epochs: int  # training epochs of the SC09 digit classifier
  listen: int  # samples per model shown and played in the notebooks
  xla_flags: str = ""  # added to $XLA_FLAGS of the notebook kernels by `hrnn reproduce`
  seed: int = 0

  def __post_init__(self):
    if (self.steps is None) == (self.epochs is None):
      raise ScaleError(f"scale {self.name!r}: give exactly one of steps={self.steps} and epochs={self.epochs}")
    for field in ("batch_size", "eval_every", "music_mesh_seq", "n_samples", "music_sample_tokens", "classifier_epochs",
                  "listen"):
      if getattr(self, field) <= 0:
        raise ScaleError(f"scale {self.name!r}: {field}={getattr(self, field)} must be positive")

  @property
  def datasets(self) -> tuple[str, str, str]:
    return self.sc09, self.beethoven, self.youtubemix


SCALES: dict[str, Scale] = {
    "smoke": Scale(
        name="smoke", model="smoke", sc09="sc09-espeak", beethoven="beethoven-piano", youtubemix="piano-minute",
        sc09_size="tiny", music_size="tiny",
        steps=4, epochs=None, music_steps=2, batch_size=4, seq_len=1600, music_seq_len=1600, eval_every=2,
        music_eval_batch=1, music_mesh_seq=1, ema_decay=0.5,
        n_samples=12, sample_tokens=1600, music_sample_tokens=1600, likelihood_band=False,
        classifier_size="tiny", classifier_epochs=1, listen=2,
        # Smoke runs are all compilation: unoptimised code compiles in 2/3 of the time (and runs 2x slower).
        xla_flags="--xla_backend_optimization_level=0"),
    "cpu": Scale(
        name="cpu", model="cpu", sc09="sc09-espeak", beethoven="beethoven-piano", youtubemix="piano-minute",
        sc09_size="small", music_size="small",
        steps=160, epochs=None, music_steps=40, batch_size=4, seq_len=4000, music_seq_len=16000, eval_every=80,
        music_eval_batch=1, music_mesh_seq=1, ema_decay=0.98,
        n_samples=64, sample_tokens=None, music_sample_tokens=64000, likelihood_band=False,
        classifier_size=None, classifier_epochs=30, listen=4),
    "workstation": Scale(
        name="workstation", model="cpu", sc09="sc09-espeak", beethoven="beethoven-piano", youtubemix="piano-minute",
        sc09_size="full", music_size="small",
        steps=20000, epochs=None, music_steps=40, batch_size=4, seq_len=4000, music_seq_len=16000, eval_every=500,
        music_eval_batch=1, music_mesh_seq=1, ema_decay=0.995,
        n_samples=256, sample_tokens=None, music_sample_tokens=64000, likelihood_band=False,
        classifier_size=None, classifier_epochs=30, listen=8),
    "paper": Scale(
        name="paper", model="paper", sc09="sc09", beethoven="beethoven", youtubemix="youtubemix",
        sc09_size="full", music_size="full",
        steps=None, epochs=500, music_steps=None, batch_size=32, seq_len=None, music_seq_len=None, eval_every=1000,
        music_eval_batch=None, music_mesh_seq=1, ema_decay=0.999,
        n_samples=10240, sample_tokens=None, music_sample_tokens=960_000, likelihood_band=True,
        classifier_size=None, classifier_epochs=20, listen=8),
}


def get_scale(name: str, **overrides) -> Scale:
  """The named scale with `overrides` applied; overrides that are None are ignored (notebook parameters use None
  for "the scale's default")."""
  if name not in SCALES:
    raise ScaleError(f"unknown run scale {name!r}; known: {', '.join(SCALES)}")
  overrides = {k: v for k, v in overrides.items() if v is not None}
  unknown = set(overrides) - {f.name for f in dataclasses.fields(Scale)}
  if unknown:
    raise ScaleError(f"unknown scale field(s) {', '.join(sorted(unknown))}")
  return dataclasses.replace(SCALES[name], **overrides)


def model_config(scale: Scale, variant: str = "baseline") -> ModelConfig:
  """The scale's base model turned into one of the paper's ablation variants (`VARIANTS`).

  groups4 / dense: pooling-conv groups 4 / 1. one-pool: a single pooling level of factor 2 with the base model's
  temporal blocks split 2/3 outside (half down, half up) and 1/3 inside, as in the paper (12 + 12 outside, 12
  inside of 36). no-pool: all temporal blocks at full rate. *-embed: the Fig. 2 input embeddings.
  """
  if variant not in VARIANTS:
    raise ScaleError(f"unknown model variant {variant!r}; known: {', '.join(VARIANTS)}")
  base = get_preset(scale.model)
  total = base.temporal_blocks
  outer = round(total / 3)
  changes = {
      "baseline": {},
      "groups4": {"pool_groups": 4},
      "dense": {"pool_groups": 1},
      "one-pool": {"pool_factors": (2,), "blocks": (outer, total - 2 * outer)},
      "no-pool": {"pool_factors": (), "blocks": (total,)},
      "linear-embed": {"embedding": "linear"},
      "learned-embed": {"embedding": "learned"},
      "learned-embed-dropout": {"embedding": "learned-dropout"},
  }[variant]
  return dataclasses.replace(base, **changes)
