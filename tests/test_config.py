"""Configuration validation and presets (issue 2)."""

import dataclasses

import pytest

from hrnn.config import PRESETS, ConfigError, ModelConfig, get_preset
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
