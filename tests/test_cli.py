"""The `hrnn` command line: help everywhere, `hrnn info`, `hrnn train`'s flags generated from the config fields."""

import dataclasses
import json
import subprocess
import sys

import pytest

from hrnn.cli import build_parser, main
from hrnn.cli import train as train_cli
from hrnn.config import ModelConfig, TrainConfig, get_preset, train_config


def test_every_subcommand_has_help(capsys):
  parser = build_parser()
  commands = parser._subparsers._group_actions[0].choices
  assert "info" in commands
  for name in commands:
    with pytest.raises(SystemExit) as e:
      main([name, "--help"])
    assert e.value.code == 0
    assert "usage: hrnn" in capsys.readouterr().out


def test_info_json(capsys):
  assert main(["info", "--preset", "paper-dense", "--json"]) == 0
  info = json.loads(capsys.readouterr().out)
  assert info["preset"] == "paper-dense" and info["params"] == 7_760_384
  assert info["pool_factors"] == [2, 4, 4, 5] and info["temporal_blocks"] == 36
  assert sum(info["breakdown"].values()) == info["params"]


def test_info_table_and_bad_preset():
  ok = subprocess.run([sys.executable, "-m", "hrnn", "info", "--preset", "one-pool"],
                      capture_output=True, text=True)
  assert ok.returncode == 0 and "7,268,608" in ok.stdout and "rate 1/2" in ok.stdout
  bad = subprocess.run([sys.executable, "-m", "hrnn", "info", "--preset", "nope"],
                       capture_output=True, text=True)
  assert bad.returncode == 2 and "unknown preset 'nope'" in bad.stderr and "Traceback" not in bad.stderr


def _train_args(*argv):
  return build_parser().parse_args(["train", "--workdir", "/nonexistent/run", *argv])


def test_train_flags_are_the_config_fields(capsys):
  with pytest.raises(SystemExit):
    main(["train", "--help"])
  text = capsys.readouterr().out
  for cls in (TrainConfig, ModelConfig):
    for field in dataclasses.fields(cls):
      if field.name not in train_cli.NOT_FLAGS:
        assert f"--{field.name.replace('_', '-')}" in text, field.name
  assert "decay of the EMA of the weights" in text  # help from the field's metadata


def test_train_flags_override_the_scale_config():
  args = _train_args("--preset", "smoke", "--dataset", "beethoven-piano", "--steps", "9", "--lr", "0.01", "--no-crop",
                     "--remat", "block", "--remat-chunk", "50", "--pool-factors", "2", "--blocks", "1", "2",
                     "--pool-groups", "none", "--scan-backend", "associative", "--eval-every", "none")
  assert train_cli.field_overrides(args) == {
      "dataset": "beethoven-piano", "steps": 9, "learning_rate": 0.01, "crop": False, "remat": "block",
      "remat_chunk": 50, "pool_factors": (2,), "blocks": (1, 2), "pool_groups": None, "scan_backend": "associative",
      "eval_every": None}
  config = train_cli.build_config(args)
  assert config == train_config("smoke", "beethoven-piano", steps=9, learning_rate=0.01, crop=False, remat="block",
                                remat_chunk=50, pool_factors=(2,), blocks=(1, 2), scan_backend="associative")
  assert config.model.pool_factors == (2,) and config.dataset == "beethoven-piano" and config.epochs is None
  # No flags: the scale's config of the preset's variant.
  assert train_cli.build_config(_train_args("--preset", "cpu", "--variant", "no-pool")).model == \
      dataclasses.replace(get_preset("cpu"), pool_factors=(), blocks=(10,))


def test_train_flag_errors_are_one_line():
  bad = subprocess.run([sys.executable, "-m", "hrnn", "train", "--workdir", "/nonexistent/run", "--remat", "all"],
                       capture_output=True, text=True)
  assert bad.returncode == 2 and "--remat" in bad.stderr and "'all' is not one of" in bad.stderr


@pytest.mark.parametrize("argv, flag, why", [
    (["--lr", "inf"], "--learning-rate/--lr", "'inf' is not a finite number"),
    (["--clip-norm", "nan"], "--clip-norm", "'nan' is not a finite number"),
    (["--dropout=-inf"], "--dropout", "'-inf' is not a finite number"),  # a ModelConfig float
    (["--b1", "x"], "--b1", "'x' is not a number"),
])
def test_train_float_flags_reject_non_finite_values_naming_the_flag(capsys, argv, flag, why):
  with pytest.raises(SystemExit) as e:
    _train_args("--preset", "smoke", *argv)
  assert e.value.code == 2
  lines = capsys.readouterr().err.strip().splitlines()
  assert lines[-1] == f"hrnn train: error: argument {flag}: {why}"
  assert "TrainConfig" not in lines[-1] and "ModelConfig" not in lines[-1]
  assert train_cli.field_overrides(_train_args("--lr", "1e-3", "--dropout", "0"))["learning_rate"] == 1e-3
