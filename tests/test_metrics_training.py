"""Training the digit classifier: it beats chance clearly on the tiny embedded sc09-espeak."""

import numpy as np
import pytest
import torch

from hrnn.data import prepare
from hrnn.metrics import TrainSettings, load_classifier, train_classifier
from hrnn.metrics.classifier import ClassifierError
from hrnn.metrics.features import TOP_DB
from hrnn.metrics.training import time_shift

torch.set_num_threads(2)


def test_time_shift_moves_frames_and_fills_with_the_floor():
  x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)
  y = time_shift(x, torch.tensor([2, -1]))
  torch.testing.assert_close(y[0, :, 2:], x[0, :, :3])
  torch.testing.assert_close(y[0, :, :2], torch.full((3, 2), -TOP_DB))
  torch.testing.assert_close(y[1, :, :4], x[1, :, 1:])
  torch.testing.assert_close(y[1, :, 4], torch.full((3,), -TOP_DB))
  torch.testing.assert_close(time_shift(x, torch.zeros(2, dtype=torch.long)), x)


def test_classifier_beats_chance_clearly_on_tiny_sc09_espeak(tmp_path):
  prepare("sc09-espeak", size="tiny", root=tmp_path)
  settings = TrainSettings(epochs=8, batch_size=8, learning_rate=1e-2, max_shift=0)
  model, info = train_classifier("sc09-espeak", "tiny", settings=settings, root=tmp_path, out=tmp_path / "c.pt",
                                 progress=False)
  assert (info["train_clips"], info["valid_clips"], info["test_clips"]) == (80, 10, 10)
  # Chance is 10%; valid and test speakers are unseen in training.
  held_out = (info["valid_accuracy"] * 10 + info["test_accuracy"] * 10) / 20
  assert held_out >= 0.3, info
  loaded, saved = load_classifier(tmp_path / "c.pt")
  assert saved["test_accuracy"] == info["test_accuracy"] and saved["dataset"] == "sc09-espeak"
  x = torch.as_tensor(np.random.default_rng(0).uniform(-80, 0, (2, 32, 32)).astype(np.float32))
  torch.testing.assert_close(loaded(x), model(x).detach())


def test_settings_are_validated():
  with pytest.raises(ClassifierError, match="epochs"):
    TrainSettings(epochs=0)
