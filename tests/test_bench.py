"""`hrnn bench train` and `hrnn bench long_context` at the smoke preset: the JSON they print and what it means
(the sample and scan benchmarks are tested beside their modules)."""

import json

import pytest

from hrnn.cli import main
from train_fixtures import compile_cache  # noqa: F401  (a pytest fixture)


def _json(capsys, *argv) -> dict:
  assert main(["bench", *argv, "--json"]) == 0
  return json.loads(capsys.readouterr().out)


@pytest.mark.heavy
def test_bench_train_reports_speed_memory_and_epochs_per_hour(capsys):
  r = _json(capsys, "train", "--preset", "smoke", "--batch", "2", "--seq-len", "320", "--steps", "1")
  assert (r["preset"], r["batch"], r["seq_len"], r["remat"]) == ("smoke", 2, 320, "block")
  assert r["tokens_per_s"] > 0 and r["compile_s"] > 0 and r["peak_rss_mb"] > 100
  # SC09: 31,158 clips of 16,000 tokens per epoch.
  assert abs(r["epochs_per_hour"] - r["tokens_per_s"] * 3600 / (31_158 * 16_000)) < 1e-4
  assert 7.0 < r["loss_bits"] < 10.0  # one step from init: about 8 + 1/(2 ln 2) bits


@pytest.mark.heavy
def test_bench_long_context_runs_the_sharded_step_or_says_why_not(capsys, compile_cache):
  # 320 local tokens per device in time chunks of at most 100 (4 chunks of 80 at the outer level). Both runs
  # compile the same step: the second loads it from the persistent compilation cache (compile_cache) instead of
  # compiling it again, and reads its memory plan from the loaded executable.
  args = ("long_context", "--preset", "smoke", "--tokens", "640", "--seq", "2", "--remat-chunk", "100")
  r = _json(capsys, *args)
  assert (r["tokens"], r["seq_devices"], r["remat_chunk"]) == (640, 2, 100)
  assert r["planned_gib"] >= 0  # rounded: 0.0 at this size
  assert r["tokens_per_s"] > 0 and r["grad_norm"] > 0 and 7.0 < r["loss_bits"] < 10.0 and "skipped" not in r
  skipped = _json(capsys, *args, "--max-gib", "0")
  assert "exceed 0.0 GiB" in skipped["skipped"] and "step_s" not in skipped
