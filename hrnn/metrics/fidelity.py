"""FID and ISC through torch-fidelity, with the SC09 digit classifier registered as its feature extractor.

`register()` adds the extractor under EXTRACTOR_NAME; torch-fidelity builds it from
`feature_extractor_weights_path` (any file `load_classifier` reads) and feeds it batches of log-mel features
[B, 1, 32, 32]. It provides two feature layers: "penultimate" (used for FID and KID) and "logits" (used for ISC).

torch-fidelity's FID is the same Frechet distance as `hrnn.metrics.frechet_distance` (it takes the eigenvalues
of S1 S2 instead of S1^(1/2) S2 S1^(1/2)); its ISC is a different estimator from SaShiMi's IS: it shuffles with
seed 2020, splits into 10 parts, and averages exp(mean KL(p_i || mean p of the part)) over the parts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from hrnn.metrics.classifier import ClassifierError, load_classifier

EXTRACTOR_NAME = "hrnn-sc09-resnext"
FEATURE_LAYERS = ("penultimate", "logits")
ISC_SPLITS = 10


class ClassifierFeatureExtractor(FeatureExtractorBase):
  """torch-fidelity feature extractor: log-mel [B, 1, 32, 32] -> (penultimate [B, D], logits [B, 10])."""

  def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
    super().__init__(name, features_list)
    if feature_extractor_weights_path is None:
      raise ClassifierError(f"torch-fidelity's {EXTRACTOR_NAME} extractor needs feature_extractor_weights_path= "
                            "a classifier file")
    self.model, _ = load_classifier(feature_extractor_weights_path)

  @staticmethod
  def get_provided_features_list():
    return FEATURE_LAYERS

  @staticmethod
  def get_default_feature_layer_for_metric(metric):
    return "logits" if metric == "isc" else "penultimate"

  @staticmethod
  def can_be_compiled():
    return False

  @staticmethod
  def get_dummy_input_for_compile():
    return torch.zeros(1, 1, 32, 32)

  def forward(self, x):
    penultimate, logits = self.model.features_and_logits(x.float())
    layers = {"penultimate": penultimate, "logits": logits}
    return tuple(layers[name] for name in self.features_list)


def register() -> None:
  """Registers the extractor with torch-fidelity (idempotent)."""
  if EXTRACTOR_NAME not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(EXTRACTOR_NAME, ClassifierFeatureExtractor)


class LogMelDataset(torch.utils.data.Dataset):
  """Log-mel features [N, 32, 32] as the tensors [1, 32, 32] torch-fidelity iterates over."""

  def __init__(self, features: np.ndarray):
    self.features = torch.as_tensor(np.asarray(features, np.float32)).unsqueeze(1)

  def __len__(self):
    return len(self.features)

  def __getitem__(self, i):
    return self.features[i]


def fidelity_scores(classifier_path: str | Path, generated: np.ndarray, reference: np.ndarray, *,
                    generated_name: str, reference_name: str, cache_root: str | Path, batch_size: int = 256,
                    cuda: bool | None = None) -> dict:
  """torch_fidelity.calculate_metrics(fid=True, isc=True) with the registered classifier.

  Args:
    classifier_path: classifier file for the extractor.
    generated: float [N, 32, 32] log-mel features of the set being scored (input1; ISC is computed on it).
    reference: float [M, 32, 32] log-mel features of the reference set (input2, for FID).
    generated_name, reference_name: torch-fidelity cache names; reuse a name only for the same features,
      classifier and `cache_root` (it lets several calls share the reference set's features).
    cache_root: folder for torch-fidelity's cache (use a temporary folder per scoring session).
    batch_size: clips per forward pass.
    cuda: run on the GPU; None = when available.

  Returns:
    {"fid": torch-fidelity FID, "isc": ISC mean over 10 splits, "isc_std": its std over the splits}.
  """
  register()
  metrics = torch_fidelity.calculate_metrics(
      input1=LogMelDataset(generated), input2=LogMelDataset(reference), fid=True, isc=True,
      feature_extractor=EXTRACTOR_NAME, feature_extractor_weights_path=str(classifier_path),
      isc_splits=ISC_SPLITS, batch_size=batch_size, cuda=torch.cuda.is_available() if cuda is None else cuda,
      cache=True, cache_root=str(cache_root), input1_cache_name=generated_name, input2_cache_name=reference_name,
      save_cpu_ram=True, verbose=False)
  return {"fid": metrics["frechet_inception_distance"], "isc": metrics["inception_score_mean"],
          "isc_std": metrics["inception_score_std"]}
