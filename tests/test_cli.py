"""The `hrnn` command line: help everywhere, `hrnn info` (issue 2)."""

import json
import subprocess
import sys

import pytest

from hrnn.cli import build_parser, main


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
