"""The ResNeXt digit classifier: architecture, saving/loading, SaShiMi's pickled release."""

import pickle
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from hrnn.errors import HrnnError
from hrnn.metrics import classifier as C

torch.set_num_threads(2)


def test_sashimi_size_matches_resnext29_8x64d_widen4():
  model = C.ResNeXt(C.classifier_config("sashimi"))
  shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
  assert model.cfg.feature_dim == 1024 and model.cfg.block_depth == 3
  assert shapes["conv_1_3x3.weight"] == (64, 1, 3, 3)
  # D = cardinality * int(base_width * out / (64 * widen)): 512, 1024, 2048 in the three stages.
  assert shapes["stage_1.stage_1_bottleneck_0.conv_conv.weight"] == (512, 64, 3, 3)
  assert shapes["stage_2.stage_2_bottleneck_2.conv_conv.weight"] == (1024, 128, 3, 3)
  assert shapes["stage_3.stage_3_bottleneck_0.conv_expand.weight"] == (1024, 2048, 1, 1)
  assert shapes["stage_3.stage_3_bottleneck_0.shortcut.shortcut_conv.weight"] == (1024, 512, 1, 1)
  assert "stage_3.stage_3_bottleneck_1.shortcut.shortcut_conv.weight" not in shapes
  assert shapes["classifier.weight"] == (10, 1024)


def test_forward_shapes_and_channel_dim_optional():
  model = C.ResNeXt(C.classifier_config("tiny")).eval()
  x = torch.randn(5, 32, 32)
  with torch.no_grad():
    features, logits = model.features_and_logits(x)
  assert features.shape == (5, model.cfg.feature_dim) and logits.shape == (5, 10)
  torch.testing.assert_close(model(x.unsqueeze(1)).detach(), logits)
  penultimate, probs = C.classifier_outputs(model, x.numpy(), batch_size=2)
  np.testing.assert_allclose(penultimate, features.double().numpy(), rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(probs.sum(1), 1.0)


def test_bad_sizes_are_rejected():
  with pytest.raises(HrnnError, match="depth"):
    C.ClassifierConfig(depth=12)
  with pytest.raises(HrnnError, match="unknown classifier size"):
    C.classifier_config("huge")


def test_save_and_load_roundtrip(tmp_path):
  model = C.ResNeXt(C.classifier_config("tiny")).eval()
  path = C.save_classifier(tmp_path / "c.pt", model, {"test_accuracy": 0.5})
  loaded, info = C.load_classifier(path)
  assert info["test_accuracy"] == 0.5 and loaded.cfg == model.cfg
  x = torch.randn(3, 1, 32, 32)
  torch.testing.assert_close(loaded(x), model(x))


def test_fingerprint_names_the_weights_bit_for_bit(tmp_path):
  torch.manual_seed(0)
  model = C.ResNeXt(C.classifier_config("tiny")).eval()
  fingerprint = C.classifier_fingerprint(model)
  assert len(fingerprint) == 12 and int(fingerprint, 16) >= 0  # 12 hex digits
  loaded, _ = C.load_classifier(C.save_classifier(tmp_path / "c.pt", model))
  assert C.classifier_fingerprint(loaded) == fingerprint  # the file round trip keeps every bit
  torch.manual_seed(0)
  assert C.classifier_fingerprint(C.ResNeXt(C.classifier_config("tiny"))) == fingerprint  # same seed, same weights
  weight = next(loaded.parameters())
  with torch.no_grad():
    weight.view(-1)[0] = torch.nextafter(weight.view(-1)[0], torch.tensor(float("inf")))  # one ulp on one weight
  assert C.classifier_fingerprint(loaded) != fingerprint
  loaded, _ = C.load_classifier(tmp_path / "c.pt")
  loaded.bn_1.running_mean[0] += 1  # a BatchNorm statistic (a buffer, not a parameter) counts too
  assert C.classifier_fingerprint(loaded) != fingerprint


def _sashimi_style_pickle(path, monkeypatch, model):
  """Pickles `model` the way SaShiMi released its classifier: a DataParallel around models.resnext classes."""
  fake = types.ModuleType("models.resnext")
  fake.CifarResNeXt = type("CifarResNeXt", (C.ResNeXt,), {"__module__": "models.resnext"})
  fake.ResNeXtBottleneck = type("ResNeXtBottleneck", (C.Bottleneck,), {"__module__": "models.resnext"})
  package = types.ModuleType("models")
  package.resnext = fake
  monkeypatch.setitem(sys.modules, "models", package)
  monkeypatch.setitem(sys.modules, "models.resnext", fake)
  model.__class__ = fake.CifarResNeXt
  for m in model.modules():
    if isinstance(m, C.Bottleneck):
      m.__class__ = fake.ResNeXtBottleneck
  del model.cfg  # SaShiMi's module holds plain ints, not hrnn's config class
  torch.save(nn.DataParallel(model), path)
  monkeypatch.delitem(sys.modules, "models.resnext")
  monkeypatch.delitem(sys.modules, "models")


def test_loads_sashimis_pickled_dataparallel_module_through_the_shim(tmp_path, monkeypatch):
  cfg = C.ClassifierConfig(cardinality=2, depth=20, base_width=4, widen_factor=0.5, stem_width=16)
  reference = C.ResNeXt(cfg).eval()
  for p in reference.parameters():  # non-trivial weights and BN statistics
    p.data.normal_(0, 0.1)
  original = C.ResNeXt(cfg).eval()
  original.load_state_dict(reference.state_dict())
  _sashimi_style_pickle(tmp_path / "resnext.pth", monkeypatch, original)
  with pytest.raises(ModuleNotFoundError):  # the plain loader cannot read it: SaShiMi's code is not importable
    torch.load(tmp_path / "resnext.pth", weights_only=False)
  loaded, info = C.load_classifier(tmp_path / "resnext.pth")
  assert type(loaded) is C.ResNeXt and loaded.cfg == cfg and "SaShiMi" in info["source"]
  x = torch.randn(4, 1, 32, 32)
  torch.testing.assert_close(loaded(x), reference(x))


class Foreign(nn.Module):
  pass


def test_pickle_with_unmappable_class_gives_a_clear_error(tmp_path):
  torch.save(Foreign(), tmp_path / "other.pth")
  with pytest.raises(C.ClassifierError, match=r"other.pth.*test_metrics_classifier.Foreign.*models.resnext"):
    C.load_classifier(tmp_path / "other.pth")


def test_unusable_files_give_clear_errors(tmp_path):
  with pytest.raises(C.ClassifierError, match="not found"):
    C.load_classifier(tmp_path / "missing.pt")
  torch.save({"weights": torch.zeros(2)}, tmp_path / "dict.pt")
  with pytest.raises(C.ClassifierError, match="not a classifier saved by hrnn"):
    C.load_classifier(tmp_path / "dict.pt")
  (tmp_path / "junk.pt").write_bytes(b"not a torch file at all")
  with pytest.raises(C.ClassifierError, match="junk.pt"):
    C.load_classifier(tmp_path / "junk.pt")
  with open(tmp_path / "plain.pkl", "wb") as f:
    pickle.dump([1, 2], f)
  with pytest.raises(C.ClassifierError, match="plain.pkl"):
    C.load_classifier(tmp_path / "plain.pkl")
