"""hrnn.scales: run scales and the ablation variants derived from their base model."""

import dataclasses

import pytest

from hrnn.config import get_preset
from hrnn.scales import SCALES, VARIANTS, ScaleError, get_scale, model_config


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_paper_scale_variants_are_the_named_paper_presets(variant):
  assert model_config(SCALES["paper"], variant) == get_preset(VARIANTS[variant])


@pytest.mark.parametrize("scale", list(SCALES))
def test_pooling_variants_hold_the_temporal_block_count(scale):
  base = model_config(SCALES[scale])
  assert base == get_preset(SCALES[scale].model)
  for variant in ("one-pool", "no-pool"):
    cfg = model_config(SCALES[scale], variant)
    assert cfg.temporal_blocks == base.temporal_blocks
  one = model_config(SCALES[scale], "one-pool")
  assert one.pool_factors == (2,) and 2 * one.blocks[0] == pytest.approx(2 * base.temporal_blocks / 3, abs=1)
  assert model_config(SCALES[scale], "dense").groups == 1 and model_config(SCALES[scale], "groups4").groups == 4


def test_paper_scale_is_the_paper_setup():
  s = SCALES["paper"]
  assert (s.model, s.datasets, s.epochs, s.batch_size) == ("paper", ("sc09", "beethoven", "youtubemix"), 500, 32)
  assert s.seq_len is None and s.music_seq_len is None and s.n_samples == 10240


def test_get_scale_overrides_and_errors():
  s = get_scale("cpu", steps=7, sc09=None, seed=3)
  assert (s.steps, s.seed, s.sc09) == (7, 3, SCALES["cpu"].sc09)
  assert dataclasses.replace(s, steps=SCALES["cpu"].steps, seed=0) == SCALES["cpu"]
  with pytest.raises(ScaleError, match="unknown run scale 'huge'"):
    get_scale("huge")
  with pytest.raises(ScaleError, match="stepz"):
    get_scale("cpu", stepz=3)
  with pytest.raises(ScaleError, match="exactly one of steps"):
    get_scale("cpu", epochs=3)
  with pytest.raises(ScaleError, match="unknown model variant"):
    model_config(SCALES["cpu"], "tiny")
