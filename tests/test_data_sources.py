"""The real datasets' download / verify / unpack path, with the hub replaced by local fake archives."""

import hashlib
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import httpx2
import huggingface_hub
import numpy as np
import pytest
from huggingface_hub import errors

from data_fakes import fake_clips, fake_sc09, zip_folder
from hrnn.data import DataError, load_split, locate, prepare, quantize, write_wav
from hrnn.data.sources import MARKER


@pytest.fixture(autouse=True)
def data_root(monkeypatch, tmp_path):
  """Token caches of --data-dir loads go to $HRNN_DATA: keep them out of the user's cache."""
  monkeypatch.setenv("HRNN_DATA", str(tmp_path / "hrnn-data"))


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
  """Fake sc09.zip (50 clips), beethoven.zip (60 clips) and youtube_mix.zip (241 clips), wrapped in a folder."""
  top = tmp_path_factory.mktemp("archives")
  return {
      "sc09.zip": zip_folder(fake_sc09(top / "sc09"), top / "sc09.zip", "sc09"),
      "beethoven.zip": zip_folder(fake_clips(top / "beethoven", 60), top / "beethoven.zip", "beethoven"),
      "youtube_mix.zip": zip_folder(fake_clips(top / "youtube_mix", 241, frames=32), top / "youtube_mix.zip",
                                    "youtube_mix"),
  }


class FakeHub:
  """Stands in for hf_hub_download / get_hf_file_metadata; counts downloads."""

  def __init__(self, archives, error=None, etag=None):
    self.archives, self.error, self.etag, self.downloads = archives, error, etag, []

  def download(self, repo_id, filename, *, repo_type, local_dir, **kwargs):
    assert repo_type == "dataset"
    if self.error is not None:
      raise self.error
    self.downloads.append(f"{repo_id}/{filename}")
    target = local_dir / filename
    shutil.copy(self.archives[filename], target)
    return str(target)

  def metadata(self, url, **kwargs):
    name = url.rsplit("/", 1)[1]
    sha = self.etag or hashlib.sha256(self.archives[name].read_bytes()).hexdigest()
    return SimpleNamespace(etag=f'"{sha}"')


def use(monkeypatch, hub):
  monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub.download)
  monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", hub.metadata)
  return hub


@pytest.mark.parametrize("name,sizes", [("sc09", [30, 10, 10]), ("beethoven", [52, 4, 4]),
                                        ("youtubemix", [212, 14, 15])])
def test_download_verify_unpack_once(monkeypatch, tmp_path, archives, name, sizes):
  hub = use(monkeypatch, FakeHub(archives))
  layout = prepare(name, root=tmp_path)
  assert [len(load_split(name, s, root=tmp_path)) for s in ("train", "valid", "test")] == sizes
  marker = json.loads((tmp_path / name / MARKER).read_text())
  archive = {"sc09": "sc09.zip", "beethoven": "beethoven.zip", "youtubemix": "youtube_mix.zip"}[name]
  assert marker["sha256"] == hashlib.sha256(archives[archive].read_bytes()).hexdigest()
  assert layout == tmp_path / name / marker["layout_dir"] and layout.name != "unpacked"  # the archive's folder
  assert prepare(name, root=tmp_path) == layout and len(hub.downloads) == 1  # unpacked once


def test_splits_are_memory_mapped_token_files_rebuilt_when_data_changes(monkeypatch, tmp_path, archives):
  from datasets.table import MemoryMappedTable

  use(monkeypatch, FakeHub(archives))
  layout = prepare("youtubemix", root=tmp_path)
  ds = load_split("youtubemix", "test", root=tmp_path)
  assert isinstance(ds.data, MemoryMappedTable)  # mapped from disk, not loaded
  cache = [Path(f["filename"]) for f in ds.cache_files]
  assert [c.parent for c in cache] == [tmp_path / "youtubemix" / "tokens"] and cache[0].name.startswith("test-mu-law-")
  assert ds[3]["tokens"].dtype == np.uint8 and len(ds[3]["tokens"]) == 32 == ds[3]["length"]
  assert load_split("youtubemix", "test", root=tmp_path).cache_files == ds.cache_files  # reused
  write_wav(layout / "230.wav", np.linspace(-1, 1, 40, dtype=np.float32))  # the data changed: re-read
  changed = load_split("youtubemix", "test", root=tmp_path)
  assert changed.cache_files != ds.cache_files and not cache[0].exists()
  assert changed[4]["tokens"].tolist() == quantize(np.linspace(-1, 1, 40), "mu-law").tolist()


def test_checksum_mismatch(monkeypatch, tmp_path, archives):
  use(monkeypatch, FakeHub(archives, etag="0" * 64))
  with pytest.raises(DataError, match="sc09.zip: SHA-256 .* does not match the hub's 0000"):
    prepare("sc09", root=tmp_path)
  assert not (tmp_path / "sc09" / MARKER).exists()


def test_gated_repository_message(monkeypatch, tmp_path, archives):
  response = httpx2.Response(403, request=httpx2.Request("GET", "https://huggingface.co/x"))
  use(monkeypatch, FakeHub(archives, error=errors.GatedRepoError("gated", response=response)))
  with pytest.raises(DataError, match=r"krandiash/beethoven is gated: accept its terms at "
                     r"https://huggingface.co/datasets/krandiash/beethoven .*HF_TOKEN"):
    prepare("beethoven", root=tmp_path)


def test_offline_message_and_manual_placement(monkeypatch, tmp_path, archives):
  use(monkeypatch, FakeHub(archives, error=errors.LocalEntryNotFoundError("no connection")))
  target = tmp_path / "youtubemix" / "youtube_mix.zip"
  with pytest.raises(DataError, match=f"Place the archive at {target} and run again, or pass --data-dir"):
    prepare("youtubemix", root=tmp_path)
  shutil.copy(archives["youtube_mix.zip"], target)  # placed by hand: no network needed
  layout = prepare("youtubemix", root=tmp_path)
  assert len(load_split("youtubemix", "valid", root=tmp_path)) == 14 and layout.is_dir()


def test_damaged_archive(monkeypatch, tmp_path, archives):
  use(monkeypatch, FakeHub(archives, error=errors.LocalEntryNotFoundError("offline")))
  (tmp_path / "sc09").mkdir()
  data = archives["sc09.zip"].read_bytes()
  (tmp_path / "sc09" / "sc09.zip").write_bytes(data[:len(data) // 2])  # half-finished copy
  with pytest.raises(DataError, match="sc09.zip: damaged or incomplete zip archive .* delete it"):
    prepare("sc09", root=tmp_path)
  assert not (tmp_path / "sc09" / MARKER).exists() and not list((tmp_path / "sc09").glob(".unpacking*"))


def test_not_prepared_and_data_dir(tmp_path, archives):
  with pytest.raises(DataError, match="dataset 'sc09' is not prepared in .*: run `hrnn data prepare sc09`"):
    load_split("sc09", "train", root=tmp_path)
  with pytest.raises(DataError, match="run `hrnn data prepare sc09-espeak`"):
    locate("sc09-espeak", root=tmp_path)
  with pytest.raises(DataError, match="--data-dir .*nowhere: folder does not exist"):
    locate("sc09", data_dir=tmp_path / "nowhere")
  # --data-dir may point at the folder above the layout (as unpacked from the zip)
  shutil.unpack_archive(archives["sc09.zip"], tmp_path / "copy")
  assert locate("sc09", data_dir=tmp_path / "copy") == tmp_path / "copy" / "sc09"
  ds = load_split("sc09", "test", data_dir=tmp_path / "copy")
  assert len(ds) == 10 and np.bincount(ds["label"]).tolist() == [1] * 10


def test_default_root(monkeypatch, tmp_path):
  from hrnn.data import default_root
  monkeypatch.setenv("HRNN_DATA", str(tmp_path / "d"))
  assert default_root() == tmp_path / "d"
  monkeypatch.delenv("HRNN_DATA")
  assert str(default_root()).endswith(".cache/hrnn/data")


def test_leftovers_of_interrupted_runs_are_removed(monkeypatch, tmp_path, archives):
  import subprocess
  dead = subprocess.Popen(["true"])
  dead.wait()  # a process id that no longer runs
  leftover = tmp_path / "sc09" / f".unpacking-{dead.pid}"
  leftover.mkdir(parents=True)
  (leftover / "half.wav").write_bytes(b"x")
  use(monkeypatch, FakeHub(archives))
  prepare("sc09", root=tmp_path)
  assert not leftover.exists() and not list((tmp_path / "sc09").glob(".unpacking*"))
