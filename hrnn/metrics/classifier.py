"""SaShiMi's SC09 digit classifier: a ResNeXt for CIFAR on 1x32x32 log-mel inputs (hrnn.metrics.protocol).

  x [B, 1, 32, 32] -> ReLU(BN(Conv3x3_stem(x)))                       [B, stem, 32, 32]
                   -> stage_1 (stride 1) -> stage_2 (stride 2) -> stage_3 (stride 2)
                                                                      [B, 256 w, 8, 8]
                   -> global average                                  [B, 256 w]     penultimate features (FID)
                   -> Linear                                          [B, 10]        logits (IS, mIS, AM)

Each stage is (depth - 2) / 9 bottlenecks; a bottleneck with D = cardinality * int(base_width * out / (64 w))
inner channels computes ReLU(BN(Conv1x1_out(ReLU(BN(GroupConv3x3_D(ReLU(BN(Conv1x1_D(x)))))))) + shortcut(x)),
the shortcut being a strided 1x1 conv + BN when the width or resolution changes. SaShiMi's size (cardinality 8,
depth 29, base width 64, widen 4) has 1024-d penultimate features.

Submodule names follow SaShiMi's released model, so its weights load into `ResNeXt` with a strict state-dict
match. That release (`resnext.pth`) is a whole pickled `torch.nn.DataParallel(CifarResNeXt)` whose pickle refers
to classes in SaShiMi's module `models.resnext`; `load_classifier` reads it through `SashimiUnpickler`, which maps
exactly the names in `SASHIMI_PICKLE_CLASSES` onto `PickledModule` placeholders (no SaShiMi code is needed) and
then copies the weights into a `ResNeXt`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hrnn.errors import HrnnError

CHECKPOINT_FORMAT = "hrnn-sc09-classifier/1"
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class ClassifierError(HrnnError):
  """A classifier file or size is unusable; the message names it and says what to do."""


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  """ResNeXt-for-CIFAR size. Stage widths are (stem, 64 w, 128 w, 256 w) with w = widen_factor."""

  cardinality: int = 8  # groups of every 3x3 conv
  depth: int = 29  # 9 * bottlenecks per stage + 2
  base_width: int = 64  # channels per group in the first stage
  widen_factor: float = 4
  stem_width: int = 64  # SaShiMi: 64
  in_channels: int = 1
  num_classes: int = 10

  def __post_init__(self):
    if self.depth < 11 or (self.depth - 2) % 9:
      raise ClassifierError(f"ClassifierConfig.depth={self.depth}: must be 9 * k + 2 with k >= 1 (e.g. 11, 29)")
    for field in ("cardinality", "base_width", "stem_width", "in_channels", "num_classes"):
      if getattr(self, field) <= 0:
        raise ClassifierError(f"ClassifierConfig.{field}={getattr(self, field)}: must be positive")
    if self.widen_factor <= 0 or (64 * self.widen_factor) % 1:
      raise ClassifierError(f"ClassifierConfig.widen_factor={self.widen_factor}: 64 * widen_factor must be a "
                            "positive integer")

  @property
  def block_depth(self) -> int:
    """Bottlenecks per stage."""
    return (self.depth - 2) // 9

  @property
  def stage_widths(self) -> tuple[int, int, int, int]:
    w = self.widen_factor
    return self.stem_width, int(64 * w), int(128 * w), int(256 * w)

  @property
  def feature_dim(self) -> int:
    """Width of the penultimate features used for FID."""
    return self.stage_widths[-1]


CLASSIFIER_SIZES = {
    # SaShiMi's classifier: ResNeXt-29 8x64d, widen 4, 1024-d features (34M parameters).
    "sashimi": ClassifierConfig(),
    # CPU-sized: one bottleneck per stage, an eighth of the widths, 128-d features (42k parameters).
    "cpu": ClassifierConfig(cardinality=4, depth=11, base_width=4, widen_factor=0.5, stem_width=16),
    # For tests only: 64-d features.
    "tiny": ClassifierConfig(cardinality=2, depth=11, base_width=4, widen_factor=0.25, stem_width=8),
}


def classifier_config(size: str) -> ClassifierConfig:
  """The `ClassifierConfig` named `size` (one of CLASSIFIER_SIZES)."""
  if size not in CLASSIFIER_SIZES:
    raise ClassifierError(f"unknown classifier size {size!r}; choose one of {', '.join(CLASSIFIER_SIZES)}")
  return CLASSIFIER_SIZES[size]


def default_size() -> str:
  """SaShiMi's size where a GPU is available, the CPU size otherwise."""
  return "sashimi" if torch.cuda.is_available() else "cpu"


class Bottleneck(nn.Module):
  """ResNeXt bottleneck (type C): y = ReLU(BN(W_expand g(W_group g(W_reduce x))) + shortcut(x)), g = ReLU o BN."""

  def __init__(self, in_channels: int, out_channels: int, stride: int, cfg: ClassifierConfig):
    super().__init__()
    inner = cfg.cardinality * int(cfg.base_width * out_channels / (64 * cfg.widen_factor))
    self.conv_reduce = nn.Conv2d(in_channels, inner, 1, bias=False)
    self.bn_reduce = nn.BatchNorm2d(inner)
    self.conv_conv = nn.Conv2d(inner, inner, 3, stride=stride, padding=1, groups=cfg.cardinality, bias=False)
    self.bn = nn.BatchNorm2d(inner)
    self.conv_expand = nn.Conv2d(inner, out_channels, 1, bias=False)
    self.bn_expand = nn.BatchNorm2d(out_channels)
    self.shortcut = nn.Sequential()
    if in_channels != out_channels or stride != 1:
      self.shortcut.add_module("shortcut_conv", nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False))
      self.shortcut.add_module("shortcut_bn", nn.BatchNorm2d(out_channels))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    """[B, in, H, W] -> [B, out, H / stride, W / stride]."""
    h = F.relu(self.bn_reduce(self.conv_reduce(x)))
    h = F.relu(self.bn(self.conv_conv(h)))
    h = self.bn_expand(self.conv_expand(h))
    return F.relu(h + self.shortcut(x))


class ResNeXt(nn.Module):
  """The digit classifier: log-mel [B, 1, 32, 32] (or [B, 32, 32]) -> logits [B, num_classes]."""

  def __init__(self, cfg: ClassifierConfig):
    super().__init__()
    self.cfg = cfg
    stem, *widths = cfg.stage_widths
    self.conv_1_3x3 = nn.Conv2d(cfg.in_channels, stem, 3, padding=1, bias=False)
    self.bn_1 = nn.BatchNorm2d(stem)
    self.stage_1 = self._stage("stage_1", stem, widths[0], stride=1)
    self.stage_2 = self._stage("stage_2", widths[0], widths[1], stride=2)
    self.stage_3 = self._stage("stage_3", widths[1], widths[2], stride=2)
    self.classifier = nn.Linear(widths[2], cfg.num_classes)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

  def _stage(self, name: str, in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    stage = nn.Sequential()
    for i in range(self.cfg.block_depth):
      first = i == 0
      stage.add_module(f"{name}_bottleneck_{i}", Bottleneck(in_channels if first else out_channels, out_channels,
                                                            stride if first else 1, self.cfg))
    return stage

  def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x [B, 1, 32, 32] or [B, 32, 32] -> (penultimate [B, feature_dim], logits [B, num_classes])."""
    if x.dim() == 3:
      x = x.unsqueeze(1)
    h = F.relu(self.bn_1(self.conv_1_3x3(x)))
    h = self.stage_3(self.stage_2(self.stage_1(h)))
    features = h.mean(dim=(2, 3))  # SaShiMi: 8x8 average pool over the 8x8 map
    return features, self.classifier(features)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.features_and_logits(x)[1]


@torch.no_grad()
def classifier_outputs(model: ResNeXt, features, batch_size: int = 256, device: str | None = None):
  """Runs the classifier in eval mode on log-mel features.

  Args:
    model: the classifier.
    features: float [N, 32, 32] log-mel features (numpy or torch).
    batch_size: clips per forward pass.
    device: torch device; None = the model's.

  Returns:
    (penultimate float64 [N, feature_dim], probabilities float64 [N, num_classes]) as numpy arrays.
  """
  device = device or next(model.parameters()).device
  model = model.eval().to(device)
  features = torch.as_tensor(np.asarray(features, np.float32))
  penultimate, probs = [], []
  for start in range(0, len(features), batch_size):
    f, logits = model.features_and_logits(features[start:start + batch_size].to(device))
    penultimate.append(f.double().cpu().numpy())
    probs.append(torch.softmax(logits.double(), dim=1).cpu().numpy())
  if not penultimate:
    raise ValueError("classifier_outputs needs at least one clip")
  return np.concatenate(penultimate), np.concatenate(probs)


def classifier_fingerprint(model: ResNeXt) -> str:
  """Which classifier this is: the first 12 hex digits of the SHA-256 of its state (each entry's name, dtype, shape
  and bytes, in `state_dict` order). Two classifiers share it only when every weight and BatchNorm statistic is
  bit-identical; the learning curves record it per scored checkpoint, so that scores of two classifiers are never
  compared as if they were one's."""
  digest = hashlib.sha256()
  for name, value in model.state_dict().items():
    digest.update(f"{name}:{value.dtype}:{tuple(value.shape)}:".encode())
    digest.update(value.detach().cpu().contiguous().numpy().tobytes())
  return digest.hexdigest()[:12]


def save_classifier(path: str | Path, model: ResNeXt, info: dict | None = None) -> Path:
  """Writes the classifier as {format, config, state_dict, info}; `load_classifier` reads it (weights_only)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  torch.save({"format": CHECKPOINT_FORMAT, "config": dataclasses.asdict(model.cfg),
              "state_dict": {k: v.cpu() for k, v in model.state_dict().items()}, "info": dict(info or {})}, path)
  return path


def load_classifier(path: str | Path) -> tuple[ResNeXt, dict]:
  """Loads a classifier saved by `save_classifier`, or SaShiMi's released pickled `resnext.pth`.

  Returns:
    (model in eval mode on the CPU, info dict: training facts such as test accuracy, and "source").

  Raises:
    ClassifierError: the file is missing, is neither format, or pickles classes the shim cannot map.
  """
  path = Path(path)
  if not path.is_file():
    raise ClassifierError(f"classifier file {path} not found; train one with `hrnn metrics train-classifier` or "
                          "pass SaShiMi's resnext.pth")
  try:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError:
    return _load_sashimi_pickle(path), {"source": f"SaShiMi pickled classifier {path.name}"}
  except (RuntimeError, EOFError, OSError) as e:
    raise ClassifierError(f"cannot read classifier file {path}: {e}") from e
  if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
    raise ClassifierError(f"{path} is not a classifier saved by hrnn ({CHECKPOINT_FORMAT}) nor SaShiMi's pickled "
                          "model; train one with `hrnn metrics train-classifier`")
  model = ResNeXt(ClassifierConfig(**checkpoint["config"]))
  model.load_state_dict(checkpoint["state_dict"])
  return model.eval(), {**checkpoint["info"], "source": f"hrnn classifier {path.name}"}


class PickledModule(nn.Module):
  """Placeholder that SaShiMi's pickled classes unpickle into: holds their submodules and weights, no forward."""


# (module, class) names in SaShiMi's pickle -> placeholder class; SaShiMi saved its model from a script run inside
# its sc09_classifier/ folder, hence the top-level package name `models`.
SASHIMI_PICKLE_CLASSES = {
    ("models.resnext", "CifarResNeXt"): PickledModule,
    ("models.resnext", "ResNeXtBottleneck"): PickledModule,
}
_ALLOWED_BUILTINS = {"set", "frozenset", "dict", "list", "tuple", "slice"}


class SashimiUnpickler(pickle.Unpickler):
  """Unpickling shim for SaShiMi's classifier: maps SASHIMI_PICKLE_CLASSES, allows torch and containers only.

  Use as `torch.load(path, pickle_module=SASHIMI_PICKLE, weights_only=False)`. Any other class raises
  `ClassifierError` naming it, so a file that needs foreign code is refused instead of executed.
  """

  def find_class(self, module: str, name: str):
    if (module, name) in SASHIMI_PICKLE_CLASSES:
      return SASHIMI_PICKLE_CLASSES[(module, name)]
    allowed = (module == "torch" or module.startswith("torch.") or (module, name) == ("collections", "OrderedDict")
               or (module in ("builtins", "__builtin__") and name in _ALLOWED_BUILTINS))  # protocol 2 names
    if not allowed:
      raise ClassifierError(
          f"the pickled classifier refers to class {module}.{name}, which hrnn cannot map (it maps "
          f"{', '.join(f'{m}.{c}' for m, c in SASHIMI_PICKLE_CLASSES)}); load it where that class is importable "
          "and re-save with hrnn.metrics.save_classifier")
    return super().find_class(module, name)


# The `pickle_module` torch.load needs: a module with Unpickler and load.
SASHIMI_PICKLE = types.ModuleType("hrnn_sashimi_pickle", "pickle module of SashimiUnpickler, for torch.load")
SASHIMI_PICKLE.Unpickler = SashimiUnpickler
SASHIMI_PICKLE.load = lambda file, **kwargs: SashimiUnpickler(file, **kwargs).load()


def _load_sashimi_pickle(path: Path) -> ResNeXt:
  """Reads SaShiMi's pickled (DataParallel-wrapped) CifarResNeXt into a ResNeXt of the matching size."""
  try:
    pickled = torch.load(path, map_location="cpu", pickle_module=SASHIMI_PICKLE, weights_only=False)
  except ClassifierError as e:
    raise ClassifierError(f"{path}: {e}") from None
  except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as e:
    raise ClassifierError(f"cannot unpickle classifier {path}: {e}") from e
  module = getattr(pickled, "module", pickled)  # unwrap DataParallel
  if not isinstance(module, nn.Module):
    raise ClassifierError(f"{path} holds a {type(module).__name__}, not a pickled SaShiMi CifarResNeXt")
  state = module.state_dict()
  model = ResNeXt(_infer_config(module, state, path))
  try:
    model.load_state_dict(state)
  except RuntimeError as e:
    raise ClassifierError(f"weights in {path} do not fit SaShiMi's ResNeXt layout: {e}") from e
  return model.eval()


def _infer_config(module: nn.Module, state: dict, path: Path) -> ClassifierConfig:
  """Recovers the ClassifierConfig from the weight shapes and the grouped conv's `groups`."""
  try:
    stem = state["conv_1_3x3.weight"]  # [stem, in, 3, 3]
    first = module.stage_1[0]
    cardinality = first.conv_conv.groups
    width_1 = state["classifier.weight"].shape[1] // 4  # 256 w / 4 = 64 w
    return ClassifierConfig(
        cardinality=cardinality, depth=9 * len(module.stage_1) + 2,
        base_width=first.conv_reduce.weight.shape[0] // cardinality, widen_factor=width_1 / 64,
        stem_width=stem.shape[0], in_channels=stem.shape[1], num_classes=state["classifier.weight"].shape[0])
  except (KeyError, AttributeError, IndexError, TypeError) as e:
    raise ClassifierError(f"{path} is not SaShiMi's CifarResNeXt (missing {e}); pass resnext.pth from "
                          "krandiash/sashimi-release sc09_classifier/") from e
