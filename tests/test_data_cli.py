"""`hrnn data prepare` and `hrnn data info`."""

import json

import huggingface_hub
from huggingface_hub import errors

from data_fakes import fake_sc09
from hrnn.cli import main


def test_prepare_then_info(tmp_path, capsys):
  assert main(["data", "prepare", "sc09-espeak", "--size", "tiny", "--root", str(tmp_path)]) == 0
  assert "sc09-espeak (size tiny, seed 0) ready in" in capsys.readouterr().out
  plot = tmp_path / "fig" / "info.png"
  assert main(["data", "info", "sc09-espeak", "--root", str(tmp_path), "--json", "--examples", "5",
               "--plot", str(plot)]) == 0
  info = json.loads(capsys.readouterr().out)
  marker = info["marker"]
  assert {s: info["splits"][s]["clips"] for s in info["splits"]} == marker["clips"]
  assert {s: info["splits"][s]["speakers"] for s in info["splits"]} == marker["speakers"]
  assert info["shared_speakers"] == []
  train = info["splits"]["train"]
  assert train["seconds"] == train["clips"] * 1.0 and train["padded"] == 0 and train["skipped"] == []
  assert train["examined"] == 5 and sum(train["histogram"]) == 5 * 16000
  assert plot.stat().st_size > 10_000 and plot.read_bytes()[:4] == b"\x89PNG"
  assert main(["data", "info", "sc09-espeak", "--root", str(tmp_path)]) == 0
  table = capsys.readouterr().out
  assert "speakers shared across splits: 0" in table and "quantization mu-law" in table


def test_info_on_a_data_dir_reports_padding_and_skips(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv("HRNN_DATA", str(tmp_path / "root"))
  layout = fake_sc09(tmp_path / "copy")
  (layout / "three" / "2c3d4e5f_nohash_0.wav").write_bytes(b"broken")
  assert main(["data", "info", "sc09", "--data-dir", str(tmp_path / "copy"), "--json"]) == 0
  info = json.loads(capsys.readouterr().out)
  train = info["splits"]["train"]
  assert train["clips"] == 29 and len(train["skipped"]) == 1 and "not readable audio" in train["skipped"][0][1]
  assert train["padded"] == 27  # fake clip k has 8,000 + 800 (k mod 11) samples: clips 10 and 21 are full
  assert main(["data", "info", "sc09", "--data-dir", str(tmp_path / "copy")]) == 0
  assert "train: skipped" in capsys.readouterr().out


def test_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
  assert main(["data", "info", "beethoven-piano", "--root", str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip()
  assert err.count("\n") == 0 and "run `hrnn data prepare beethoven-piano`" in err

  def offline(*args, **kwargs):
    raise errors.LocalEntryNotFoundError("no connection")

  monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
  assert main(["data", "prepare", "sc09", "--root", str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("hrnn data: error: cannot download sc09.zip") and f"{tmp_path}/sc09/sc09.zip" in err
