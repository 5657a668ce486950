"""hrnn.paper.curves: training time and NLL read from a run's log, the extrapolation, the EMA export and the curve."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hrnn.paper import curves
from hrnn.train.checkpoint import load_model, read_config, write_config
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
  # A checkpoint between log lines: step 15 halfway through the second interval (10 + 10 s), step 25 past the last
  # line at its rate (30 + 10 s), step 5 halfway through the first (from step 0 at 0 s).
  elapsed = {10: 10.0, 20: 30.0}
  assert [curves.seconds_at(elapsed, s) for s in (5, 10, 15, 25)] == [5.0, 10.0, 20.0, 40.0]
  assert math.isnan(curves.seconds_at({}, 5))
  assert curves.logged_nll(tmp_path) == {10: 6.5, 20: 6.0}
  assert curves.logged_nll(tmp_path, "test") == {20: 6.1}
  _log(tmp_path, [{"step": 5, "loss_bits": 7.0}, {"step": 10, "loss_bits": 6.0}, {"step": 15, "loss_bits": 5.0},
                  {"step": 20, "loss_bits": None}])
  assert curves.logged_train_nll(tmp_path, [10, 20]) == {10: 6.5, 20: 5.0}  # means since the previous step asked


def test_line_fit_and_its_fieller_crossing():
  # x = 0..3, y = 1.0, 1.6, 1.8, 2.6: mean x 1.5, mean y 1.75, sxx = 2.25 + 0.25 + 0.25 + 2.25 = 5,
  # sxy = 1.125 + 0.075 + 0.025 + 1.275 = 2.5, slope 0.5; fitted 1.0, 1.5, 2.0, 2.5, residuals 0, .1, -.2, .1:
  # s^2 = 0.06 / 2 = 0.03, slope se = sqrt(0.03 / 5).
  fit = curves.fit_line([0, 1, 2, 3], [1.0, 1.6, 1.8, 2.6])
  assert (fit.n, fit.mean_x, fit.mean_y, fit.sxx) == (4, 1.5, pytest.approx(1.75), 5.0)
  assert fit.slope == pytest.approx(0.5) and fit.s == pytest.approx(math.sqrt(0.03))
  assert fit.slope_se == pytest.approx(math.sqrt(0.006)) and fit(4.0) == pytest.approx(3.0)
  assert fit.se(1.5) == pytest.approx(math.sqrt(0.03 / 4))
  # IS 3 at x = 1.5 + 1.25 / 0.5 = 4. One standard error: A = 0.25 - 0.006 = 0.244, C = 1.5625 - 0.0075 = 1.555,
  # slope d = 0.625, disc = 0.390625 - 0.244 * 1.555 = 0.011205: u = (0.625 -+ 0.1058537) / 0.244.
  x, low, high = curves.crossing(fit, 3.0)
  assert x == pytest.approx(4.0)
  assert low == pytest.approx(1.5 + 0.5191463 / 0.244, abs=1e-6)
  assert high == pytest.approx(1.5 + 0.7308537 / 0.244, abs=1e-6)
  for end, side in ((low, 1), (high, -1)):  # the band's edge passes through the target at each end
    assert fit(end) + side * fit.se(end) == pytest.approx(3.0)
  # Ten standard errors: A = 0.25 - 0.6 < 0, the slope is not resolved: C = 1.5625 - 0.75 = 0.8125,
  # disc = 0.390625 + 0.35 * 0.8125 = 0.675; the near end is the larger root 1.5 + (0.625 - sqrt 0.675) / -0.35.
  x, low, high = curves.crossing(fit, 3.0, k=10.0)
  assert low == pytest.approx(1.5 + (0.625 - math.sqrt(0.675)) / -0.35) and high == math.inf
  assert curves.crossing(curves.fit_line([0, 1, 2], [2.0, 2.0, 2.0]), 3.0) is None  # flat: never gets there
  with pytest.raises(ValueError, match="at least 3"):
    curves.fit_line([0, 1], [1, 2])


def test_extrapolate_in_tokens_steps_and_hours():
  # 1,000 tokens per step; IS = 1 + 0.5 log2(step / 1000) is a line in ln(tokens) with slope 0.5 / ln 2:
  # IS 3 at step 16,000 = 16 million tokens; at 4,000 tokens/s that is 4,000 s = 1.11 hours. No residuals: no band.
  table = pd.DataFrame({"IS": [1.0, 1.5, 2.0, math.nan]}, index=pd.Index([1000, 2000, 4000, 8000], name="step"))
  trend = curves.extrapolate(table, "IS", 3.0, tokens_per_step=1000, tokens_per_second=4000.0)
  assert trend.steps == (1000, 2000, 4000) and trend.fit.slope == pytest.approx(0.5 / math.log(2))
  assert trend.tokens == pytest.approx(16e6) and trend.low == pytest.approx(16e6) and trend.high == pytest.approx(16e6)
  assert trend.hours(trend.tokens) == pytest.approx(4000 / 3600)
  assert curves.extrapolate(table, "IS", 0.5, 1000, 4000.0) is None  # the curve rises: it never comes back to 0.5
  assert curves.extrapolate(table.iloc[:2], "IS", 3.0, 1000, 4000.0) is None  # two points are not a curve
  # A flat, noisy curve: in units of ln 2, x = 0..3 and IS - 1.575 = -.075, .125, -.175, .125, so sxy = 0.15 and the
  # slope 0.03 / ln 2 is far inside its standard error: no central estimate, only a lower bound beyond the data.
  table = pd.DataFrame({"IS": [1.5, 1.7, 1.4, 1.7], "samples": 32},
                       index=pd.Index([1000, 2000, 4000, 8000], name="step"))
  trend = curves.extrapolate(table, "IS", 3.0, tokens_per_step=1000, tokens_per_second=4000.0)
  assert trend.fit.slope == pytest.approx(0.03 / math.log(2)) and trend.high == math.inf and trend.low > 8e6
  text = curves.trend_text(trend, table)
  assert "IS does not rise measurably" in text and "with no upper bound" in text and "On this line" not in text


def test_goal_reached_is_stated_from_the_scored_checkpoints(tmp_path):
  # 16,000 tokens per step logged at 8,000 tokens/s. IS first >= 3 at step 2,000: 32 million tokens, 4,000 s = 1.1
  # hours; from there 3.2, 2.9, 3.5: two of three at 3 or more, mean 3.2.
  _log(tmp_path, [{"step": 10, "tokens_per_s": 8000.0}], batch_size=4, seq_len=4000)
  table = pd.DataFrame({"epoch": [0.5, 1.0, 2.0, 4.0], "train hours": [0.6, 1.3, 2.5, 5.0],
                        "IS": [1.0, 3.2, 2.9, 3.5], "samples": [32, 32, 32, 32]},
                       index=pd.Index([1000, 2000, 4000, 8000], name="step"))
  text = curves.goal_text(table, tmp_path)
  assert text.startswith("**Measured: IS 3 reached.** The first scored checkpoint at IS 3 or more is step 2,000 "
                         "(IS 3.20; 32 million training tokens, 1.00 epochs; 1.3 hours of logged step times")
  assert "1.1 hours at the run's median logged throughput of 8,000 tokens/s" in text
  assert "Of the 3 checkpoints scored from there on, 2 score IS 3 or more: mean 3.20, lowest 2.90, highest 3.50" in text
  assert "Each point scores 32 clips" in text
  # Not reached yet: the trend's paragraph instead.
  text = curves.goal_text(table.assign(IS=[1.0, 1.5, 2.0, 2.5]), tmp_path)
  assert "Measured" not in text and "Extrapolation (a fitted trend, not a measurement)" in text


def test_keep_samples_copies_a_few_clips_with_their_predicted_digit(tmp_path):
  import torch

  from hrnn.data.audio import write_wav
  from hrnn.metrics import ResNeXt, classifier_config

  for i in range(3):  # square waves of amplitude 0.5: RMS 0.5
    write_wav(tmp_path / "scored" / f"sample_{i:05d}.wav", np.where(np.arange(16000) % 40 < 20, 0.5, -0.5))
  write_wav(tmp_path / "kept" / "sample_00009.wav", np.zeros(16000))  # an older step's clip: replaced
  classifier = ResNeXt(classifier_config("tiny"))
  with torch.no_grad():  # logits = bias: ln 9 for "seven", 0 elsewhere, so p(seven) = 9 / (9 + 9) = 0.5
    classifier.classifier.weight.zero_()
    classifier.classifier.bias.copy_(torch.tensor([0.0] * 7 + [math.log(9)] + [0.0] * 2))
  records = curves.keep_samples(tmp_path / "scored", tmp_path / "kept", classifier, k=2)
  assert sorted(p.name for p in (tmp_path / "kept").glob("*.wav")) == ["sample_00000.wav", "sample_00001.wav"]
  assert [r["file"] for r in records] == ["sample_00000.wav", "sample_00001.wav"]
  for record in records:
    assert record["digit"] == "seven" and record["probability"] == pytest.approx(0.5)
    assert record["rms"] == pytest.approx(0.5, abs=1e-3)
  assert json.loads((tmp_path / "kept" / "samples.json").read_text())["samples"] == records


def test_a_curve_refuses_a_dataset_of_another_size_than_the_run_trained_on(tmp_path, data_root):  # noqa: F811
  from hrnn import data

  # The run logged epoch = step / 100 (100 steps per epoch); data_root's small sc09-espeak gives 320 clips / batch 4
  # = 80: another copy of the dataset, whose FID reference and epochs would be wrong.
  _log(tmp_path, [{"step": 10, "epoch": 0.1, "loss_bits": 6.0}, {"step": 10, "split": "valid", "nll_bits": 6.5}],
       batch_size=4, seq_len=2000)
  assert data.num_batches(data.load_split("sc09-espeak", "train", root=data_root), 4) == 80
  with pytest.raises(data.DataError, match=r"trained on 100 steps per epoch of sc09-espeak, but the copy in the data "
                                           r"root gives 80 \(batch 4\)"):
    curves.curve(tmp_path, tmp_path / "out", classifier=None, n=0, root=data_root)
  curves.check_same_dataset(tmp_path, 100)  # the same size: no error


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


def test_exported_models_play_with_the_digit_the_classifier_hears(tmp_path, data_root, compile_cache):  # noqa: F811
  import torch

  from hrnn.data import DIGITS, read_audio
  from hrnn.metrics import classifier as C
  from hrnn.train.loop import train_and_evaluate

  workdir = tmp_path / "run"
  train_and_evaluate(run_config(data_root, steps=2, checkpoint_every=1, keep_checkpoints=5), workdir, progress=False)
  out = tmp_path / "out"
  assert curves.exported_models(out) == {} and curves.listen_to_exported(out, 2, tmp_path / "clips") == []
  for name, step in (("sc09-espeak-no-pool", 1), ("sc09-espeak-baseline", 2), ("earlier/sc09-espeak-baseline", 1)):
    curves.export_ema(workdir, out / Path(name).parent / "models" / Path(name).name, step=step)
  (out / "models" / "notes").mkdir()  # not an export: no config
  # VARIANTS order, then an earlier run's (OUT/earlier/models), named by its folder.
  assert list(curves.exported_models(out)) == ["sc09-espeak-baseline", "sc09-espeak-no-pool",
                                               "earlier/sc09-espeak-baseline"]
  # No classifier for the dataset (music, your own audio, curves scored with --n 0): the clips play, unlabelled.
  unlabelled = curves.listen_to_exported(out, 1, tmp_path / "unlabelled", seconds=0.05)
  assert [label for label, _ in unlabelled] == ["sc09-espeak-baseline (EMA weights of step 2), sample 0",
                                                "sc09-espeak-no-pool (EMA weights of step 1), sample 0",
                                                "earlier/sc09-espeak-baseline (EMA weights of step 1), sample 0"]
  torch.manual_seed(0)
  C.save_classifier(out / "classifier" / "sc09-espeak.pt", C.ResNeXt(C.classifier_config("tiny")).eval())
  rows = curves.listen_to_exported(out, 2, tmp_path / "clips", seconds=0.05)
  labels = [label.split(": the classifier hears '")[0] for label, _ in rows]
  assert labels == [f"{name} (EMA weights of step {step}), sample {i}" for name, step in
                    (("sc09-espeak-baseline", 2), ("sc09-espeak-no-pool", 1), ("earlier/sc09-espeak-baseline", 1))
                    for i in range(2)]
  assert all(label.split("'")[1] in DIGITS for label, _ in rows)
  assert [p.relative_to(tmp_path / "clips").as_posix() for _, p in rows] == [
      "sc09-espeak-baseline/sample_00000.wav", "sc09-espeak-baseline/sample_00001.wav",
      "sc09-espeak-no-pool/sample_00000.wav", "sc09-espeak-no-pool/sample_00001.wav",
      "earlier/sc09-espeak-baseline/sample_00000.wav", "earlier/sc09-espeak-baseline/sample_00001.wav"]
  assert all(len(read_audio(p)) == 800 for _, p in rows)  # 0.05 s at 16 kHz


def jax_leaves(tree):
  import jax

  return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_a_curve_is_never_continued_with_another_runs_checkpoints(tmp_path, capsys):
  import hashlib

  from hrnn.errors import HrnnError

  # The fingerprint hashes the first logged training step (step, loss, gradient norm), evaluations skipped.
  first = {"step": 10, "loss_bits": 8.660409927368164, "grad_norm": 9.125988960266113}
  _log(tmp_path / "a", [{"step": 10, "split": "valid", "nll_bits": 7.0}, {**first, "tokens_per_s": 3531.0},
                        {"step": 20, "loss_bits": 8.4, "grad_norm": 9.4}])
  expected = hashlib.sha256(b'{"grad_norm": 9.125988960266113, "loss_bits": 8.660409927368164, "step": 10}')
  assert curves.run_fingerprint(tmp_path / "a") == expected.hexdigest()[:12]
  # A run retrained into the same directory name differs in the last bit of its first loss: another run.
  _log(tmp_path / "b", [{**first, "loss_bits": math.nextafter(first["loss_bits"], 0.0)}])
  other = curves.run_fingerprint(tmp_path / "b")
  assert other != curves.run_fingerprint(tmp_path / "a")
  assert curves.run_fingerprint(tmp_path / "empty") is None
  table = pd.DataFrame({"IS": [1.5, 2.0, 2.5], curves.RUN_COLUMN: [math.nan, other, other]},
                       index=pd.Index([250, 500, 750], name="step"))
  curves.check_same_run(table, other, tmp_path / "b", "t.csv")  # rows before the column (NaN) are not checked
  run = curves.run_fingerprint(tmp_path / "a")
  with pytest.raises(HrnnError, match=rf"t.csv is the curve of another run \(run {other}\) than the one in "
                                      rf".*a \(run {run}\): move the table"):
    curves.check_same_run(table, run, tmp_path / "a", "t.csv")
  # ... and curve() refuses before reading any checkpoint.
  out = tmp_path / "out"
  save_curve(out, "sc09-espeak-a", table)
  with pytest.raises(HrnnError, match="is the curve of another run"):
    curves.curve(tmp_path / "a", out, classifier=None, n=0, root=tmp_path / "no-data")
  # The command line says so in one line (exit status 2), with no traceback.
  with pytest.raises(SystemExit) as exit_:
    curves.main([str(tmp_path / "a"), "--out", str(out), "--n", "0"])
  assert exit_.value.code == 2 and "learning_curve_sc09-espeak-a.csv is the curve of another run" in \
      capsys.readouterr().err


@pytest.mark.slow
def test_curve_scores_each_checkpoint_and_reuses_rows(tmp_path, data_root, compile_cache, monkeypatch):  # noqa: F811
  from hrnn import metrics
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
  assert curves.scorers(again) == dict.fromkeys([1, 2], metrics.classifier_fingerprint(classifier))
  # Another classifier rescores every row whose checkpoint the run still has; one the run lost keeps its scores.
  other, _ = train_classifier("sc09-espeak", "tiny", settings=TrainSettings(epochs=1, seed=1), root=data_root,
                              progress=False)
  lost = table.rename(index={2: 3})  # step 3: scored once, its checkpoint gone
  lost.to_csv(tmp_path / "out" / "tables" / "learning_curve_sc09-espeak-run.csv")
  rescored = curves.curve(workdir, tmp_path / "out", other, n=10, root=data_root)
  new, old = metrics.classifier_fingerprint(other), metrics.classifier_fingerprint(classifier)
  assert curves.scorers(rescored) == {1: new, 2: new, 3: old}
  assert set(rescored[curves.RUN_COLUMN]) == {curves.run_fingerprint(workdir)}
  assert rescored.loc[3, "IS"] == table.loc[2, "IS"] and rescored.loc[1, "IS"] != table.loc[1, "IS"]


def test_readme_states_the_curve_and_its_extrapolation(tmp_path):
  # Batch 4 x 4,000 = 16,000 tokens per step, logged at 8,000 tokens/s. IS = 1 + 0.5 log2(step / 1000) reaches 3 at
  # step 16,000 = 256 million tokens: 256e6 / 8,000 = 32,000 s = 8.9 hours.
  _log(tmp_path / "run", [{"step": 10, "tokens_per_s": 8000.0}, {"step": 20, "tokens_per_s": 1000.0},
                          {"step": 30, "tokens_per_s": 8000.0}], batch_size=4, seq_len=4000)
  table = pd.DataFrame({"epoch": [0.6, 1.2, 2.5], "train hours": [0.5, 1.0, 2.0], "valid NLL (bits)": [6.0, 5.5, 5.0],
                        "train NLL (bits)": [6.1, 5.6, 5.1],
                        "IS": [1.0, 1.5, 2.0], "FID": [300.0, 200.0, 100.0], "samples": [64, 64, 64]},
                       index=pd.Index([1000, 2000, 4000], name="step"))
  out = tmp_path / "out"
  (out / "audio" / "sc09-espeak-run").mkdir(parents=True)
  (out / "audio" / "sc09-espeak-run" / "samples.json").write_text(json.dumps(
      {"source": "out/runs/curve_samples/sc09-espeak-run/4000",
       "samples": [{"file": "sample_00000.wav", "digit": "three", "probability": 0.625, "rms": 0.125}]}))
  section = curves.write_section(out, table, "sc09-espeak-run", tmp_path / "run", export="results/x/models/run")
  assert section == out / "curves" / "sc09-espeak-run.md"
  save_curve(out, "sc09-espeak-run", table)
  text = curves.write_readme(out).read_text()
  assert text.startswith("# Learning curves of sample quality\n")
  # One curve: no comparison; the section follows, linked by its GitHub anchor (`_log` writes the default preset).
  assert "Comparison" not in text and text.endswith(section.read_text())
  assert "[sc09-espeak-run](#run-model-paper-on-sc09-espeak-synthetic-speech-espeak-ng)" in text
  assert "## run: model `paper` on sc09-espeak (synthetic speech, espeak-ng)" in text and "### Listen" in text
  assert "IS 3 is reached after about 256 million training tokens: step 16,000, 8.9 hours" in text
  assert "median logged throughput of 8,000 tokens/s" in text
  assert "planned 20 steps (320,000 tokens, 0.0 hours) fall short of that estimate" in text  # _log plans 20
  assert "b = 0.721 ± 0.000 per e-fold" in text  # 0.5 / ln 2
  assert "0.6 decades of tokens beyond the last scored checkpoint (64 million tokens)" in text  # log10(256 / 64)
  assert "| 4000 | 2.5 | 2 | 5 | 5.1 | 2 | 100 | 64 |" in text
  assert "| [sample_00000.wav](audio/sc09-espeak-run/sample_00000.wav) | three | 0.625 | 0.125 |" in text
  assert "scored at step 4000" in text
  assert ("Scored by classifier `unrecorded` (3 checkpoints, steps 1,000-4,000) (`unrecorded`: scored before the "
          "tables recorded the classifier's fingerprint).") in text
  config = read_config(tmp_path / "run")
  assert curves.classifier_text(table.iloc[:1].assign(classifier="abc"), out, config) == \
      "Scored by classifier `abc` (1 checkpoint, step 1,000)."
  assert "hrnn sample --checkpoint results/x/models/run" in text and "sc09-espeak (synthetic speech" in text


@pytest.mark.slow
def test_committed_weights_load_as_the_cpu_model():
  # results/workstation ships the EMA weights that `hrnn sample --checkpoint` reads on a fresh clone (a restore
  # of the real checkpoint: ~20 s of CPU, hence slow; test_export_keeps_only_the_ema_weights_and_loads covers the
  # export's loading fast).
  from pathlib import Path

  import jax
  from flax import nnx

  from hrnn.model.harmonic_rnn import HarmonicRNN

  model, config = load_model(Path(__file__).parents[1] / "results" / "workstation" / "models" / "sc09-espeak-baseline")
  fresh = nnx.eval_shape(lambda: HarmonicRNN(get_preset("cpu"), rngs=nnx.Rngs(0)))  # shapes only, no compute
  assert config.dataset == "sc09-espeak" and config.model == get_preset("cpu")
  shapes = [x.shape for x in jax_leaves(nnx.state(model, nnx.Param))]
  assert shapes == [x.shape for x in jax.tree.leaves(nnx.state(fresh, nnx.Param))]


def test_only_checkpoints_one_classifier_scored_are_paired(tmp_path):
  # Rows without a classifier column were all scored by one unrecorded classifier; unscored rows have none.
  assert curves.scorers(BASELINE) == dict.fromkeys(BASELINE.index, curves.UNRECORDED)
  assert 500 not in curves.scorers(BASELINE.assign(IS=[math.nan, 1.5, 2.0, 2.4, 2.6, 3.0]))
  # One-pool's steps 2,500 and 3,000 were rescored by classifier "0123e4" (digits that read as a number if let):
  # the common steps of one classifier end at 2,000, so the pairs are 1,000-2,000: 0.2, 0.8, 0.6, mean 1.6 / 3.
  save_curve(tmp_path, "sc09-espeak-baseline", BASELINE.assign(classifier="aaa"))
  save_curve(tmp_path, "sc09-espeak-one-pool", ONE_POOL.assign(classifier=["aaa"] * 4 + ["0123e4"] * 2))
  tables = curves.read_curves(tmp_path)
  assert curves.scorers(tables["sc09-espeak-one-pool"])[3000] == "0123e4"
  (difference,) = curves.compare(tables, "IS")
  assert difference.steps == (1000, 1500, 2000) and difference.value == pytest.approx(1.6 / 3)
  # A curve that no classifier of the baseline's scored is left out of the comparison, and named.
  save_curve(tmp_path, "sc09-espeak-no-pool", NO_POOL.assign(classifier="bbb"))
  text = curves.comparison_text(curves.read_curves(tmp_path), tmp_path)
  assert ("sc09-espeak-no-pool is not compared: no checkpoint of it was scored by the classifier that scored "
          "sc09-espeak-baseline's (`aaa`; sc09-espeak-no-pool: `bbb`)") in text
  assert "| sc09-espeak-one-pool |" in text and "| sc09-espeak-no-pool |" not in text
  assert "mean over steps 1,000-2,000 = +0.533" in text


def test_a_fresh_clone_has_what_the_listening_cells_read():
  # The quickstart's last section reads every export under results/workstation/models and the classifier that
  # scored its curve; both must be in git, not only on the machine that made them (CI's clean checkout once failed
  # on a classifier the .gitignore kept out).
  import subprocess
  from pathlib import Path

  from hrnn.train.checkpoint import CONFIG_FILE

  repo = Path(__file__).parents[1]
  listed = subprocess.run(["git", "ls-files", "results/workstation"], cwd=repo, capture_output=True, text=True)
  if listed.returncode != 0:
    pytest.skip("not a git checkout")
  tracked = set(listed.stdout.split())
  exports = curves.exported_models(repo / "results" / "workstation")
  assert exports
  for name, path in exports.items():
    rel = path.relative_to(repo).as_posix()
    assert f"{rel}/{CONFIG_FILE}" in tracked and any(f.startswith(f"{rel}/checkpoints/") for f in tracked)
    assert f"results/workstation/classifier/{read_config(path).dataset}.pt" in tracked, name


def save_curve(out, name, table):
  out.joinpath("tables").mkdir(parents=True, exist_ok=True)
  table.to_csv(out / "tables" / f"learning_curve_{name}.csv")


def _curve(is_values, fid_values, steps=(500, 1000, 1500, 2000, 2500, 3000)):
  return pd.DataFrame({"train hours": [s / 2000 for s in steps], "train NLL (bits)": [7 - s / 1000 for s in steps],
                       "IS": is_values, "FID": fid_values}, index=pd.Index(steps, name="step"))


# The last common step is 3,000, so the pairs are those of steps 1,500, 2,000, 2,500 and 3,000.
BASELINE = _curve([1.0, 1.5, 2.0, 2.4, 2.6, 3.0], [900.0, 300.0, 200.0, 150.0, 120.0, 100.0])
ONE_POOL = _curve([1.0, 1.3, 1.2, 1.8, 1.6, 2.4], [900.0, 320.0, 250.0, 190.0, 180.0, 150.0])
NO_POOL = _curve([1.0, 1.5, 1.8, 2.6, 2.2, 3.2], [900.0, 300.0, 200.0, 150.0, 120.0, 100.0])


def test_curves_compared_by_differences_paired_over_the_last_half_of_common_training(tmp_path):
  for name, table in (("sc09-espeak-no-pool", NO_POOL), ("sc09-espeak-baseline", BASELINE),
                      ("sc09-espeak-one-pool", ONE_POOL)):
    save_curve(tmp_path, name, table)
  tables = curves.read_curves(tmp_path)
  assert list(tables) == ["sc09-espeak-baseline", "sc09-espeak-one-pool", "sc09-espeak-no-pool"]  # VARIANTS order
  is_diff, is_vs_no_pool = curves.compare(tables, "IS")
  # Baseline minus one-pool: pairs 0.8, 0.6, 1.0, 0.6; mean 0.75; squared deviations 0.0025 + 0.0225 + 0.0625 +
  # 0.0225 = 0.11, sd sqrt(0.11 / 3) = 0.1915, se = sd / 2 = 0.0957: 0.75 > 2 x 0.0957, judged.
  assert (is_diff.a, is_diff.b, is_diff.steps) == ("sc09-espeak-baseline", "sc09-espeak-one-pool",
                                                   (1500, 2000, 2500, 3000))
  assert is_diff.value == pytest.approx(0.75) and is_diff.se == pytest.approx(math.sqrt(0.11 / 3) / 2)
  assert is_diff.judged
  # Baseline minus no-pool: pairs 0.2, -0.2, 0.4, -0.2; mean 0.05; sd sqrt(0.27 / 3) = 0.3, se 0.15: within noise.
  assert is_vs_no_pool.value == pytest.approx(0.05) and is_vs_no_pool.se == pytest.approx(0.15)
  assert not is_vs_no_pool.judged
  fid_diff, fid_vs_no_pool = curves.compare(tables, "FID")  # pairs -50, -40, -60, -50: sd sqrt(200 / 3), se / 2
  assert fid_diff.value == pytest.approx(-50.0) and fid_diff.se == pytest.approx(math.sqrt(200 / 3) / 2)
  assert fid_diff.judged
  assert fid_vs_no_pool.value == 0.0 and not fid_vs_no_pool.judged  # identical curves: no difference, se 0
  # A curve not scored that far: the window moves to the last step all three scored (2,000: pairs from 1,000).
  save_curve(tmp_path, "sc09-espeak-no-pool", NO_POOL.iloc[:4])
  assert curves.compare(curves.read_curves(tmp_path), "IS")[0].steps == (1000, 1500, 2000)
  # Two pairs: a large difference is still not judged (its noise is barely known).
  assert not curves.Difference("IS", "a", "b", (500, 1000), value=5.0, se=0.1).judged
  assert curves.Difference("IS", "a", "b", (500, 1000, 1500), value=5.0, se=0.1).judged
  assert not curves.Difference("IS", "a", "b", (500,), value=5.0, se=math.nan).judged
  save_curve(tmp_path, "sc09-espeak-no-pool", _curve([1.5], [90.0], steps=(250,)))
  assert curves.compare(curves.read_curves(tmp_path), "IS") == []


def test_readme_compares_the_curves_and_keeps_each_section(tmp_path):
  _log(tmp_path / "baseline", [{"step": 3000, "tokens_per_s": 8000.0}], batch_size=4, seq_len=4000)
  _log(tmp_path / "one-pool", [{"step": 3000, "tokens_per_s": 4000.0}], batch_size=4, seq_len=4000)
  out = tmp_path / "out"
  for run, table in (("baseline", BASELINE), ("one-pool", ONE_POOL)):
    table = table.assign(epoch=1.0, samples=32)
    curves.write_section(out, table, f"sc09-espeak-{run}", tmp_path / run)
    save_curve(out, f"sc09-espeak-{run}", table)
  text = curves.write_readme(out).read_text()
  assert "## Comparison at equal training" in text and (out / "plots" / "learning_curves.png").exists()
  # At step 3,000: 1.5 hours, NLL 4, IS 3, FID 100; means over 1,500-3,000: IS 10 / 4 = 2.5, FID 570 / 4 = 142.5.
  assert "| sc09-espeak-baseline | 1.5 | 4 | 3 | 100 | 2.5 | 142.5 |" in text
  assert "| sc09-espeak-one-pool | 1.5 | 4 | 2.4 | 150 | 1.75 | 192.5 |" in text
  assert ("- IS: sc09-espeak-baseline minus sc09-espeak-one-pool, mean over steps 1,500-3,000 = +0.75, more than 2 "
          "times its standard error (0.0957): sc09-espeak-baseline is better (higher IS is better).") in text
  assert ("- FID: sc09-espeak-baseline minus sc09-espeak-one-pool, mean over steps 1,500-3,000 = -50, more than 2 "
          "times its standard error (4.08): sc09-espeak-baseline is better (lower FID is better).") in text
  # Both sections follow the comparison, baseline first.
  assert text.index("## Comparison") < text.index("## baseline: model") < text.index("## one-pool: model")
  # Curves of earlier runs kept in OUT/earlier (an OUT of their own) are linked, never compared with these; its
  # intro.md goes under the title.
  (out / "earlier").mkdir()
  (out / "earlier" / "intro.md").write_text("Runs lost with their machine.\n")
  curves.write_readme(out / "earlier")
  assert (out / "earlier" / "README.md").read_text().startswith(
      "# Learning curves of sample quality\n\nRuns lost with their machine.\n\nHow NLL")
  linked = curves.write_readme(out).read_text()
  assert "are kept in [earlier/](earlier/README.md)." in linked and linked.replace(
      "Earlier runs, whose curves cannot be compared with these, are kept in [earlier/](earlier/README.md).\n\n",
      "") == text
  # The valid NLL, logged every few thousand steps, is shown at the last step every run evaluated (2,000: one-pool
  # did not evaluate at 3,000).
  for run, table, nll in (("baseline", BASELINE, [4.5, 4.25]), ("one-pool", ONE_POOL, [4.75, math.nan])):
    valid = pd.Series([nll[0], nll[1]], index=[2000, 3000]).reindex(table.index)
    save_curve(out, f"sc09-espeak-{run}", table.assign(epoch=1.0, samples=32, **{"valid NLL (bits)": valid}))
  with_nll = curves.comparison_text(curves.read_curves(out), out)
  assert "| curve | train hours | train NLL (bits) | valid NLL (bits), step 2,000 | IS |" in with_nll
  assert "| sc09-espeak-baseline | 1.5 | 4 | 4.5 | 3 | 100 |" in with_nll
  assert "| sc09-espeak-one-pool | 1.5 | 4 | 4.75 | 2.4 | 150 |" in with_nll
  assert "logged by each run at step 2,000, the last step all of them evaluated" in with_nll
  assert "valid NLL" not in text.split("## baseline")[0]  # no step that every curve evaluated: no column
