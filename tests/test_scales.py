"""hrnn.config run scales and the ablation variants derived from their base model."""

import dataclasses

import pytest

from hrnn.config import PRESETS, SCALES, VARIANTS, ConfigError, apply_variant, get_preset, get_scale, model_config


def test_paper_scale_variants_are_the_named_paper_presets():
  # The variants of the paper model under the names of the paper's tables, with block counts worked by hand:
  # one-pool keeps 36 temporal blocks as 12 per path outside and 12 inside, no-pool has all 36 at full rate.
  paper = SCALES["paper"]
  names = {"baseline": "paper", "groups4": "paper-groups4", "dense": "paper-dense", "one-pool": "one-pool",
           "no-pool": "no-pool", "linear-embed": "paper-linear-embed", "learned-embed": "paper-learned-embed",
           "learned-embed-dropout": "paper-learned-embed-dropout"}
  assert set(names) == set(VARIANTS) and set(names.values()) < set(PRESETS)
  for variant, preset in names.items():
    assert model_config(paper, variant) == get_preset(preset)
  assert get_preset("one-pool").blocks == (12, 12) and get_preset("no-pool").blocks == (36,)
  assert get_preset("paper-groups4").groups == 4 and get_preset("paper-linear-embed").embedding == "linear"


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


def test_cpu_one_pool_splits_ten_blocks():
  # cpu: 2 x (1 + 1 + 1 + 1) + 2 = 10 temporal blocks; one-pool: round(10 / 3) = 3 per path outside, 4 inside.
  assert apply_variant(get_preset("cpu"), "one-pool").blocks == (3, 4)


def test_paper_scale_is_the_paper_setup():
  s = SCALES["paper"]
  assert (s.model, s.datasets, s.epochs, s.batch_size) == ("paper", ("sc09", "beethoven", "youtubemix"), 500, 32)
  assert s.seq_len is None and s.music_seq_len is None and s.n_samples == 10240


def test_get_scale_overrides_and_errors():
  s = get_scale("cpu", steps=7, sc09=None, seed=3)
  assert (s.steps, s.seed, s.sc09) == (7, 3, SCALES["cpu"].sc09)
  assert dataclasses.replace(s, steps=SCALES["cpu"].steps, seed=0) == SCALES["cpu"]
  with pytest.raises(ConfigError, match="unknown run scale 'huge'"):
    get_scale("huge")
  with pytest.raises(ConfigError, match="stepz"):
    get_scale("cpu", stepz=3)
  with pytest.raises(ConfigError, match="exactly one of steps"):
    get_scale("cpu", epochs=3)
  with pytest.raises(ConfigError, match="unknown model variant"):
    model_config(SCALES["cpu"], "tiny")


def test_workstation_is_the_cpu_scale_trained_longer_on_full_data():
  # The workstation scale is the cpu scale with exactly these fields changed (the learning curve of
  # results/workstation): the full dataset, 20,000 steps of 4,000-token crops, validation every 2,000 steps, a
  # slower EMA (horizon 1 / (1 - 0.995) = 200 steps), 256 scored samples, one seed, a 200-step warm-up.
  cpu, ws = SCALES["cpu"], SCALES["workstation"]
  changed = {f.name: getattr(ws, f.name) for f in dataclasses.fields(ws) if getattr(ws, f.name) != getattr(cpu, f.name)}
  assert changed == {"name": "workstation", "sc09_size": "full", "steps": 20000, "seq_len": 4000, "eval_every": 2000,
                     "ema_decay": 0.995, "n_samples": 256, "listen": 8, "seeds": 1, "warmup_steps": 200}
  assert (cpu.steps, cpu.seq_len, cpu.seeds, cpu.warmup_steps, cpu.sc09_size) == (60, 1600, 3, None, "small")
