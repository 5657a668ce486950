"""torch-fidelity with the digit classifier as its feature extractor agrees with the kit's own numpy scores."""

import numpy as np
import pytest
import torch

from hrnn.metrics import classifier as C
from hrnn.metrics import fidelity, scores

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("fidelity")
  torch.manual_seed(0)
  model = C.ResNeXt(C.classifier_config("tiny")).eval()
  path = C.save_classifier(tmp / "tiny.pt", model)
  rng = np.random.default_rng(0)
  # Two sets of log-mel-like inputs in [-80, 0] with different statistics.
  generated = (-80 * rng.uniform(size=(300, 32, 32)) ** 0.5).astype(np.float32)
  reference = (-80 * rng.uniform(size=(400, 32, 32)) ** 2).astype(np.float32)
  return model, path, generated, reference, tmp


def test_torch_fidelity_fid_equals_numpy_fid_on_the_same_features(setup):
  model, path, generated, reference, tmp = setup
  got = fidelity.fidelity_scores(path, generated, reference, generated_name="gen", reference_name="ref",
                                 cache_root=tmp / "cache", batch_size=128, cuda=False)
  f_gen, p_gen = C.classifier_outputs(model, generated)
  f_ref, _ = C.classifier_outputs(model, reference)
  fid = scores.frechet_distance(f_ref, f_gen)
  assert fid > 0.01  # the sets differ, so the comparison is not 0 == 0
  assert got["fid"] == pytest.approx(fid, abs=1e-3)
  # torch-fidelity's ISC: 10 splits of a seed-2020 shuffle, mean of the per-split scores (on our logits).
  shuffled = p_gen[np.random.RandomState(2020).permutation(len(p_gen))]
  per_split = [np.exp(scores.kl_divergence(part, part.mean(0)).mean()) for part in np.array_split(shuffled, 10)]
  assert got["isc"] == pytest.approx(np.mean(per_split), rel=1e-6)
  assert got["isc_std"] == pytest.approx(np.std(per_split), rel=1e-4, abs=1e-9)


def test_extractor_is_registered_once_and_exposes_both_layers(setup):
  from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

  _, path, generated, _, _ = setup
  fidelity.register()
  fidelity.register()
  cls = FEATURE_EXTRACTORS_REGISTRY[fidelity.EXTRACTOR_NAME]
  extractor = cls(fidelity.EXTRACTOR_NAME, ["logits", "penultimate"], feature_extractor_weights_path=str(path))
  logits, penultimate = extractor(torch.as_tensor(generated[:4]).unsqueeze(1))
  assert logits.shape == (4, 10) and penultimate.shape == (4, 64)
  assert cls.get_default_feature_layer_for_metric("fid") == "penultimate"
  assert cls.get_default_feature_layer_for_metric("isc") == "logits"
