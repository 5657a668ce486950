"""hrnn.config: validation, presets, and the one derivation of a TrainConfig (train_config, override)."""

import dataclasses

import pytest

from hrnn.config import PRESETS, SCALES, ConfigError, ModelConfig, TrainConfig, get_preset, train_config
from hrnn.errors import HrnnError


@pytest.mark.parametrize("changes, field", [
    (dict(width=96, pool_groups=64), "pool_groups"),  # 64 groups do not divide 96 features
    (dict(pool_groups=3), "pool_groups"),
    (dict(pool_factors=(2, 1)), "pool_factors"),
    (dict(pool_factors=(2, 4)), "blocks"),  # 3 entries needed
    (dict(blocks=(4, -1, 4, 4, 4)), "blocks"),
    (dict(width=127, pool_groups=1), "width"),
    (dict(lru_width=200), "gate_blocks"),
    (dict(embedding="onehot"), "embedding"),
    (dict(dropout=1.5), "dropout"),
    (dict(r_min=0.99, r_max=0.9), "r_min"),
])
def test_bad_config_names_the_field(changes, field):
  with pytest.raises(ConfigError, match=rf"ModelConfig\.{field}="):
    dataclasses.replace(ModelConfig(), **changes)


def test_unknown_preset_lists_known_ones():
  with pytest.raises(HrnnError, match="unknown preset 'papr'.*paper-groups4"):
    get_preset("papr")


def test_small_presets_keep_the_paper_structure():
  paper = get_preset("paper")
  for name in ("cpu", "smoke"):
    cfg = get_preset(name)
    assert cfg.pool_factors == paper.pool_factors and cfg.total_pool == 160
    assert cfg.groups == cfg.width  # depthwise pooling, as the paper baseline
    assert cfg.embedding == "sinusoidal"


def test_presets_are_frozen():
  with pytest.raises(dataclasses.FrozenInstanceError):
    PRESETS["paper"].width = 3


def test_num_blocks_init_scale_counts():
  cfg = get_preset("paper")
  assert [cfg.num_blocks(i) for i in range(5)] == [17, 17, 17, 17, 8]
  assert get_preset("no-pool").num_blocks(0) == 72


def test_train_config_takes_the_scale_settings():
  # cpu scale, SC09 layout: 60 steps of batch 4, random 1,600-token crops of the 16,000-token clips, validation at
  # step 60, EMA 0.85; warm-up over a tenth of the steps (6).
  config = train_config("cpu", "sc09-espeak")
  assert (config.model, config.preset, config.dataset) == (get_preset("cpu"), "cpu", "sc09-espeak")
  assert (config.steps, config.epochs, config.batch_size, config.seq_len, config.crop) == (60, None, 4, 1600, True)
  assert (config.eval_every, config.ema_decay, config.warmup_steps, config.mesh_seq) == (60, 0.85, 6, 1)
  # Music (piano-minute, 960,000-token clips): the scale's music values, test split only.
  music = train_config("cpu", "piano-minute")
  assert (music.steps, music.seq_len, music.crop, music.eval_every, music.eval_batch_size) == (24, 16000, True, None, 1)
  # paper: whole clips (no crop), 500 epochs, the paper's warm-up; a variant of the preset.
  paper = train_config("paper", "sc09", variant="one-pool")
  assert (paper.epochs, paper.steps, paper.seq_len, paper.crop, paper.warmup_steps) == (500, None, None, False, 1000)
  assert paper.model == get_preset("one-pool") and paper.preset == "paper"
  # A Scale object (notebook overrides) and the scale's default dataset and model.
  scale = dataclasses.replace(SCALES["smoke"], steps=30)
  assert train_config(scale=scale) == train_config("smoke", "sc09-espeak", steps=30)


def test_override_changes_any_field_and_keeps_one_length():
  config = train_config("smoke", "sc09-espeak")
  longer = config.override(epochs=2, learning_rate=1e-3, remat="block", remat_chunk=100, pool_factors=(2, 4, 4, 5))
  assert (longer.epochs, longer.steps, longer.learning_rate) == (2, None, 1e-3)
  assert (longer.model.remat, longer.model.remat_chunk) == ("block", 100) and longer.model.width == 16
  assert longer.override(steps=7).epochs is None and config.override(steps=7).steps == 7
  with pytest.raises(ConfigError, match="exactly one of steps and epochs"):
    config.override(steps=3, epochs=3)
  with pytest.raises(ConfigError, match="unknown TrainConfig or ModelConfig field.*lr"):
    config.override(lr=0.1)
  with pytest.raises(ConfigError, match=r"ModelConfig\.remat_chunk"):
    config.override(remat_chunk=10)  # needs remat block or stack
  assert TrainConfig.from_dict(longer.to_dict()) == longer


def test_every_field_documents_itself():
  for cls in (ModelConfig, TrainConfig):
    for field in dataclasses.fields(cls):
      assert len(field.metadata["help"]) > 5, field.name
  model_names = {f.name for f in dataclasses.fields(ModelConfig)}
  assert not model_names & {f.name for f in dataclasses.fields(TrainConfig)}  # override() relies on it
