"""Training the SC09 digit classifier on log-mel features of a dataset's train split.

  loss = CE(ResNeXt(shift(features)), label)        AdamW, one-cycle learning rate (warm-up then cosine decay)

The only augmentation is a random time shift of up to `max_shift` frames (32 ms each), filling with the -80 dB
floor that silence has in these features: the log-mel is relative to each clip's maximum, so gain changes are
invisible to the classifier and need no augmentation. Validation accuracy is shown after every epoch; test
accuracy is measured once at the end.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hrnn.metrics.classifier import (ClassifierConfig, ClassifierError, ResNeXt, classifier_config, classifier_outputs,
                                     default_size, save_classifier)
from hrnn.metrics.clips import split_features
from hrnn.metrics.features import TOP_DB


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Optimisation settings of `train_classifier`."""

  epochs: int = 20
  batch_size: int = 64
  learning_rate: float = 3e-3  # peak of the one-cycle schedule
  weight_decay: float = 1e-2  # AdamW, decoupled
  max_shift: int = 4  # frames of random time shift
  seed: int = 0

  def __post_init__(self):
    for field in ("epochs", "batch_size"):
      if getattr(self, field) < 1:
        raise ClassifierError(f"TrainSettings.{field}={getattr(self, field)}: must be at least 1")


def train_classifier(dataset: str = "sc09-espeak", size: str | ClassifierConfig | None = None, *,
                     settings: TrainSettings = TrainSettings(), root=None, device: str | None = None,
                     out=None, progress: bool = True) -> tuple[ResNeXt, dict]:
  """Trains the digit classifier on `dataset`'s train split and measures valid and test accuracy.

  Args:
    dataset: an SC09-layout dataset of hrnn.data ("sc09" or "sc09-espeak"), already prepared under `root`.
    size: a CLASSIFIER_SIZES name or a ClassifierConfig; None = SaShiMi's size on a GPU, "cpu" otherwise.
    settings: optimisation settings.
    root: data root (None = hrnn.data's default).
    device: torch device; None = "cuda" when available, else "cpu".
    out: where to save the classifier (`save_classifier`); None = not saved.
    progress: show tqdm progress bars.

  Returns:
    (trained model in eval mode, info dict with dataset, size, accuracies, clip counts and seconds).
  """
  cfg = size if isinstance(size, ClassifierConfig) else classifier_config(size or default_size())
  start = time.time()
  x_train, y_train, _ = split_features(dataset, "train", root)
  x_valid, y_valid, _ = split_features(dataset, "valid", root)
  x_test, y_test, _ = split_features(dataset, "test", root)
  torch.manual_seed(settings.seed)
  model = ResNeXt(cfg)
  train_accuracy, valid_accuracy = fit(model, (x_train, y_train), (x_valid, y_valid), settings, device, progress)
  info = {"dataset": dataset, "config": dataclasses.asdict(cfg), "settings": dataclasses.asdict(settings),
          "train_clips": len(x_train), "valid_clips": len(x_valid), "test_clips": len(x_test),
          "train_accuracy": train_accuracy, "valid_accuracy": valid_accuracy,
          "test_accuracy": accuracy(model, x_test, y_test), "seconds": time.time() - start}
  if out is not None:
    save_classifier(out, model, info)
  return model, info


def fit(model: ResNeXt, train, valid, settings: TrainSettings = TrainSettings(), device: str | None = None,
        progress: bool = True) -> tuple[float, float]:
  """Trains `model` in place on log-mel features and leaves it in eval mode.

  Args:
    model: the classifier (moved to `device`).
    train, valid: (float [N, 32, 32] features, int [N] labels) pairs.
    settings: optimisation settings.
    device: torch device; None = "cuda" when available, else "cpu".
    progress: per-batch progress bar and a line per epoch, on stderr.

  Returns:
    (train accuracy of the last epoch (augmented, in train mode), final valid accuracy).
  """
  device = device or ("cuda" if torch.cuda.is_available() else "cpu")
  model.to(device)
  inputs, labels = torch.as_tensor(train[0]), torch.as_tensor(train[1])
  steps_per_epoch = -(-len(inputs) // settings.batch_size)
  optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
  schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.learning_rate,
                                                 total_steps=settings.epochs * steps_per_epoch)
  train_accuracy = valid_accuracy = 0.0
  for epoch in range(settings.epochs):
    rng = np.random.default_rng((settings.seed, epoch))
    order = torch.as_tensor(rng.permutation(len(inputs)))
    shifts = torch.as_tensor(rng.integers(-settings.max_shift, settings.max_shift + 1, len(inputs)))
    model.train()
    correct = seen = 0
    loss_sum = 0.0
    bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch",
               disable=not progress, leave=False)
    for step in bar:
      idx = order[step * settings.batch_size:(step + 1) * settings.batch_size]
      x = time_shift(inputs[idx], shifts[idx]).to(device)
      y = labels[idx].to(device)
      logits = model(x)
      loss = F.cross_entropy(logits, y)
      optimizer.zero_grad(set_to_none=True)
      loss.backward()
      optimizer.step()
      schedule.step()
      loss_sum += loss.item() * len(y)
      correct += (logits.argmax(1) == y).sum().item()
      seen += len(y)
      bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%")
    train_accuracy = correct / seen
    valid_accuracy = accuracy(model, *valid)
    if progress:
      tqdm.write(f"epoch {epoch + 1}/{settings.epochs}: loss {loss_sum / seen:.4f}, train accuracy "
                 f"{100 * train_accuracy:.2f}%, valid accuracy {100 * valid_accuracy:.2f}%", file=sys.stderr)
  model.eval()
  return train_accuracy, valid_accuracy


def time_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
  """Shifts each log-mel [B, M, T] by shift[b] frames (positive = later), filling with the -80 dB floor."""
  frames = x.shape[-1]
  source = torch.arange(frames)[None, :] - shift[:, None]  # [B, T]
  valid = (source >= 0) & (source < frames)
  shifted = torch.gather(x, 2, source.clamp(0, frames - 1)[:, None, :].expand_as(x))
  return torch.where(valid[:, None, :], shifted, torch.full_like(shifted, -TOP_DB))


def accuracy(model: ResNeXt, features: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of clips whose most probable class is the label."""
  _, probs = classifier_outputs(model, features)
  return float((probs.argmax(1) == np.asarray(labels)).mean())
