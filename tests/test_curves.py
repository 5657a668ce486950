"""hrnn.paper.curves: training time and NLL read from a run's log, the extrapolation, the EMA export and the curve."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from hrnn.paper import curves
from hrnn.train.checkpoint import load_model, write_config
from hrnn.config import TrainConfig, get_preset

from train_fixtures import compile_cache, data_root, run_config  # noqa: F401  (fixtures)


def _log(workdir, records, **config):
  workdir.mkdir(parents=True, exist_ok=True)
  write_config(workdir, TrainConfig(model=get_preset("smoke"), dataset="sc09-espeak", steps=20, epochs=None,
                                    **config))
  (workdir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_train_seconds_and_logged_nll(tmp_path):
  # Batch 4 x 2,000 tokens: 10 steps at 8,000 tokens/s take 10 s, the next 10 at 4,000 tokens/s 20 s.
  _log(tmp_path, [{"step": 10, "tokens_per_s": 8000.0}, {"step": 10, "split": "valid", "nll_bits": 6.5},
                  {"step": 20, "tokens_per_s": 4000.0}, {"step": 20, "split": "valid", "nll_bits": 6.0},
                  {"step": 20, "split": "test", "nll_bits": 6.1}], batch_size=4, seq_len=2000)
  assert curves.train_seconds(tmp_path) == {10: pytest.approx(10.0), 20: pytest.approx(30.0)}
  assert curves.logged_nll(tmp_path) == {10: 6.5, 20: 6.0}
  assert curves.logged_nll(tmp_path, "test") == {20: 6.1}
  _log(tmp_path, [{"step": 5, "loss_bits": 7.0}, {"step": 10, "loss_bits": 6.0}, {"step": 15, "loss_bits": 5.0},
                  {"step": 20, "loss_bits": None}])
  assert curves.logged_train_nll(tmp_path, [10, 20]) == {10: 6.5, 20: 5.0}  # means since the previous step asked


def test_steps_to_extrapolates_on_log_steps():
  # IS = 1 + 0.5 log2(step / 1000): IS 3 at log2 = 4, step 16,000.
  table = pd.DataFrame({"IS": [1.0, 1.5, 2.0]}, index=pd.Index([1000, 2000, 4000], name="step"))
  assert curves.steps_to(table, "IS", 3.0) == pytest.approx(16000.0)
  assert curves.steps_to(table, "IS", 0.5) is None  # the curve rises: it never comes back down to 0.5
  assert curves.steps_to(table.iloc[:2], "IS", 3.0) is None  # two points are not a curve


def test_export_keeps_only_the_ema_weights_and_loads(tmp_path, data_root, compile_cache):  # noqa: F811
  from flax import nnx

  from hrnn.train.loop import train_and_evaluate

  workdir = tmp_path / "run"
  train_and_evaluate(run_config(data_root, steps=2, checkpoint_every=1, keep_checkpoints=5, eval_every=1),
                     workdir, progress=False)
  dest = curves.export_ema(workdir, tmp_path / "export", step=1)
  exported, config = load_model(dest)
  original, _ = load_model(workdir, step=1)
  for a, b in zip(jax_leaves(nnx.state(exported, nnx.Param)), jax_leaves(nnx.state(original, nnx.Param))):
    np.testing.assert_array_equal(a, b)
  assert config.dataset == "sc09-espeak"
  size = sum(p.stat().st_size for p in (dest / "checkpoints").rglob("*") if p.is_file())
  full = sum(p.stat().st_size for p in (workdir / "checkpoints" / "1").rglob("*") if p.is_file())
  assert size < full / 2  # params, EMA and two Adam moments in the run; only the EMA in the export
  assert curves.logged_nll(workdir).keys() == {1, 2}
  assert math.isfinite(curves.train_seconds(workdir)[2])


def jax_leaves(tree):
  import jax

  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_curve_scores_each_checkpoint_and_reuses_rows(tmp_path, data_root, compile_cache, monkeypatch):  # noqa: F811
  from hrnn.metrics import TrainSettings, train_classifier
  from hrnn.train.loop import train_and_evaluate

  monkeypatch.setenv("HRNN_DATA", str(data_root))
  workdir = tmp_path / "run"
  train_and_evaluate(run_config(data_root, steps=2, checkpoint_every=1, keep_checkpoints=5, eval_every=1),
                     workdir, progress=False)
  classifier, _ = train_classifier("sc09-espeak", "tiny", settings=TrainSettings(epochs=1), root=data_root,
                                   progress=False)
  table = curves.curve(workdir, tmp_path / "out", classifier, n=10, root=data_root)
  assert list(table.index) == [1, 2] and (table["samples"] == 10).all()
  assert (table["IS"] >= 1.0).all() and (table["IS"] <= 10.0).all() and (table["FID"] >= 0).all()
  assert (tmp_path / "out" / "plots" / "learning_curve_sc09-espeak-run.png").exists()
  again = curves.curve(workdir, tmp_path / "out", classifier, n=10, root=data_root)  # nothing regenerated
  pd.testing.assert_frame_equal(again, table, check_dtype=False)


def test_readme_states_the_curve_and_its_extrapolation(tmp_path):
  _log(tmp_path / "run", [], batch_size=4, seq_len=4000)
  # IS = 1 + 0.5 log2(step / 1000) reaches 3 at step 16,000; 4,000 steps took 2 hours: 8 hours at that rate.
  table = pd.DataFrame({"epoch": [0.6, 1.2, 2.5], "train hours": [0.5, 1.0, 2.0], "valid NLL (bits)": [6.0, 5.5, 5.0],
                        "train NLL (bits)": [6.1, 5.6, 5.1],
                        "IS": [1.0, 1.5, 2.0], "FID": [300.0, 200.0, 100.0], "samples": [64, 64, 64]},
                       index=pd.Index([1000, 2000, 4000], name="step"))
  (tmp_path / "out").mkdir()
  text = curves.write_readme(tmp_path / "out", table, "sc09-espeak-run", tmp_path / "run",
                             export="results/x/models/run").read_text()
  assert "near step 16,000, about 8.0 training hours" in text
  assert "| 4000 | 2.5 | 2 | 5 | 5.1 | 2 | 100 | 64 |" in text
  assert "hrnn sample --checkpoint results/x/models/run" in text and "sc09-espeak (synthetic speech" in text
