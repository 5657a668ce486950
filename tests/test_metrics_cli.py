"""`hrnn metrics train-classifier` and `hrnn metrics score` on the tiny embedded sc09-espeak."""

import argparse
import json
import shutil

import pytest
import torch

from hrnn.cli import main
from hrnn.cli.metrics import SIZES, add_arguments, format_result
from hrnn.data import load_split, prepare
from hrnn.metrics import (CLASSIFIER_SIZES, ESTIMATORS, LIKELIHOOD_BAND, TrainSettings, default_classifier_path,
                          load_classifier)
from hrnn.paper.published import table

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A prepared tiny sc09-espeak and a classifier trained on it for one epoch by the CLI (default path)."""
  root = tmp_path_factory.mktemp("data")
  prepare("sc09-espeak", size="tiny", root=root)
  code = main(["metrics", "train-classifier", "--dataset", "sc09-espeak", "--size", "tiny", "--epochs", "1",
               "--root", str(root), "--json"])
  assert code == 0
  return root, default_classifier_path("sc09-espeak", "tiny", root)


def _run(capsys, *argv):
  capsys.readouterr()
  code = main(list(argv))
  out, err = capsys.readouterr()
  return code, out, err


def test_train_classifier_reports_accuracies_and_saves(trained, capsys):
  root, path = trained
  _, info = load_classifier(path)
  assert info["dataset"] == "sc09-espeak" and info["test_clips"] == 10
  code, out, _ = _run(capsys, "metrics", "train-classifier", "--dataset", "sc09-espeak", "--size", "tiny",
                      "--epochs", "1", "--root", str(root), "--out", str(root / "again.pt"))
  assert code == 0 and (root / "again.pt").is_file()
  assert f"test  accuracy {100 * info['test_accuracy']:6.2f}%  (10 clips)" in out  # same seed, same result


def test_score_json_on_samples(trained, tmp_path, capsys):
  root, path = trained
  for i, wav in enumerate(load_split("sc09-espeak", "test", root=root)["path"]):
    shutil.copy(wav, tmp_path / f"{i}.wav")
  code, out, _ = _run(capsys, "metrics", "score", "--samples", str(tmp_path), "--reference", "sc09-espeak",
                      "--classifier", str(path), "--root", str(root), "--no-torch-fidelity", "--json")
  result = json.loads(out)
  assert code == 0 and list(result["rows"]) == ["train", "test", "samples"]
  # The samples are the test split itself, so both rows agree exactly.
  assert result["rows"]["samples"] == result["rows"]["test"]


def test_text_report_labels_every_estimator(trained, capsys):
  root, _ = trained  # the default classifier path is found without --classifier
  code, out, _ = _run(capsys, "metrics", "score", "--reference", "sc09-espeak", "--root", str(root))
  assert code == 0 and "none (reference rows only)" in out
  for key in ("fid", "is", "is_textbook", "mis", "am", "fid_torch_fidelity", "isc_torch_fidelity"):
    assert ESTIMATORS[key] in out
  assert "published by SaShiMi" not in out  # published rows are for real SC09 only


def test_cli_choices_and_defaults_match_the_library():
  assert SIZES == tuple(CLASSIFIER_SIZES)
  parser = argparse.ArgumentParser()
  add_arguments(parser)
  args = parser.parse_args(["train-classifier", "--dataset", "sc09-espeak"])
  defaults = TrainSettings()
  assert (args.epochs, args.batch_size, args.learning_rate, args.seed) == (
      defaults.epochs, defaults.batch_size, defaults.learning_rate, defaults.seed)
  assert parser.parse_args(["score"]).band is None  # = LIKELIHOOD_BAND, given only with --likelihoods
  assert "0.40 0.95" in parser._subparsers._group_actions[0].choices["score"].format_help()
  assert LIKELIHOOD_BAND == (0.40, 0.95)


def test_published_reference_rows_shown_beside_computed_ones_for_sc09():
  rows = {name: {"fid": 0.1, "is": 2.0, "mis": 3.0, "am": 0.5} for name in ("train", "test")}
  result = {"reference": "sc09", "classifier": {"source": "x"}, "samples_dir": None, "sample_files": 0,
            "scored": 0, "selection": None, "clips": {}, "rows": rows, "estimators": ESTIMATORS}
  text = "\n".join(format_result(result))
  published = table("sc09_reference")
  for row in published.rows:
    line = next(line for line in text.splitlines() if line.startswith(row.label + "*"))
    assert line.split()[1:] == [f"{row.values[0]:.3f}", f"{row.values[1]:.3f}", f"{row.values[2]:.2f}",
                                f"{row.values[3]:.3f}"]


def test_text_report_says_how_many_clips_were_scored_and_which_selection():
  rows = {"samples": {"fid": 0.1, "is": 2.0, "is_textbook": 2.5, "mis": 3.0, "am": 0.5}}
  selection = {"rule": "r", "band": [0.4, 0.95], "seed": 0, "mis_clips": 4107, "held_out": 5120}
  result = {"reference": "sc09-espeak", "classifier": {"source": "x"}, "samples_dir": "s", "sample_files": 10240,
            "scored": 2816, "selection": selection, "clips": {}, "rows": rows, "estimators": ESTIMATORS}
  text = "\n".join(format_result(result))
  assert ("s: 2816 of 10240 files scored: the 40%..95% likelihood band of the held-out half (5120 files) of a "
          "random split, NumPy seed 0 after the mIS of 4107 test clips, as SaShiMi's script selects") in text
  assert f"IS(text) = {ESTIMATORS['is_textbook']}" in text
  every = format_result({**result, "selection": None, "scored": 10240})
  assert "s: 10240 of 10240 files scored (every file)" in "\n".join(every)


def _one_error_line(code, err, *names):
  assert code == 2 and err.count("\n") == 1 and err.startswith("hrnn") and ": error: " in err, err
  for name in names:
    assert name in err, (name, err)


def test_errors_are_one_line_with_status_2(trained, tmp_path, capsys):
  root, _ = trained
  code, _, err = _run(capsys, "metrics", "score", "--samples", str(tmp_path / "missing"), "--root", str(root),
                      "--classifier", str(tmp_path / "none.pt"))
  _one_error_line(code, err, "none.pt")
  (tmp_path / "l.json").write_text("{not json")
  code, _, err = _run(capsys, "metrics", "score", "--samples", str(tmp_path), "--likelihoods",
                      str(tmp_path / "l.json"), "--root", str(root))
  _one_error_line(code, err, "l.json")


def test_bad_score_options_are_one_error_line(trained, tmp_path, capsys):
  root, _ = trained
  for i, wav in enumerate(load_split("sc09-espeak", "test", root=root)["path"]):
    shutil.copy(wav, tmp_path / f"sample_{i}.wav")
  (tmp_path / "ll.json").write_text(json.dumps({f"sample_{i}.wav": -float(i) for i in range(10)}))
  likelihoods = ["--samples", str(tmp_path), "--root", str(root), "--likelihoods", str(tmp_path / "ll.json")]
  code, _, err = _run(capsys, "metrics", "score", "--batch-size", "0", "--root", str(root))
  _one_error_line(code, err, "--batch-size 0", "positive")
  code, _, err = _run(capsys, "metrics", "score", "--samples", str(tmp_path), "--band", "0.1", "0.9")
  _one_error_line(code, err, "--band 0.1 0.9", "--likelihoods")
  for band in (["0.9", "0.5"], ["-0.1", "0.5"], ["0.5", "1.5"], ["nan", "0.5"]):
    code, _, err = _run(capsys, "metrics", "score", *likelihoods, "--band", *band)
    _one_error_line(code, err, "--band", f"({float(band[0]):g}, {float(band[1]):g})", "0 <= LO < HI <= 1")
  code, _, err = _run(capsys, "metrics", "score", *likelihoods, "--band", "0.5", "0.52")
  _one_error_line(code, err, "(0.5, 0.52)", "keeps no clip")
  (tmp_path / "ll.json").write_text(json.dumps({f"sample_{i}.wav": -float(i) if i != 3 else float("nan")
                                                for i in range(10)}))
  code, _, err = _run(capsys, "metrics", "score", *likelihoods)
  _one_error_line(code, err, "log-likelihood of sample_3.wav is nan")
