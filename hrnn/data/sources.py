"""Where datasets come from: the Hugging Face hub (real ones) or the generators (embedded ones).

Every dataset lives in ROOT/NAME (ROOT = `default_root()` unless given). A finished dataset carries the marker
ROOT/NAME/hrnn_dataset.json, which records where its layout folder is and how it was made; everything is built in
a scratch folder beside it and moved into place only when complete, so an interrupted `prepare` never leaves a
half-built dataset that looks finished.

Real datasets: `huggingface_hub.hf_hub_download` fetches the zip archive into ROOT/NAME (the hub resumes an
interrupted download from its `.incomplete` file), the archive is checked against the hub's SHA-256, then unpacked
once. Without network, an archive placed by hand at ROOT/NAME/ARCHIVE is unpacked the same way, and
`data_dir` (`--data-dir`) may point straight at an unpacked copy.

The user's own datasets (hrnn.data.folder) are built from their source folder the same way; `prepare(NAME)` of
one rebuilds it from the folder recorded in its marker when that folder's files changed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import re
import shutil
import time
import warnings
import zipfile
from pathlib import Path

import huggingface_hub  # lazy itself: its functions load on first use
from tqdm.auto import tqdm

from hrnn.data.folder import rebuild
from hrnn.data.home import dataset_home, install, read_marker, scratch_dir
from hrnn.data.layout import find_layout_dir
from hrnn.data.manifest import DataWarning, warn_if_changed, write_manifest
from hrnn.data.specs import MARKER, DataError, DatasetSpec, get_spec

UNPACKED = "unpacked"
SIZES: tuple[str, ...] = ("tiny", "small", "full")
# Embedded dataset name -> generator module (each has build(name, out_dir, size, seed) -> stats dict).
GENERATORS = {"sc09-espeak": "hrnn.data.espeak", "beethoven-piano": "hrnn.data.piano",
              "piano-minute": "hrnn.data.piano"}


def locate(name: str, root: str | Path | None = None, data_dir: str | Path | None = None) -> Path:
  """The layout folder of a dataset: under `data_dir` when given, else the prepared copy in ROOT/NAME.

  Raises:
    DataError: the dataset has not been prepared (says how), or `data_dir` holds no matching layout.
  """
  spec = get_spec(name, root)
  if data_dir is not None:
    data_dir = Path(data_dir).expanduser()
    if not data_dir.is_dir():
      raise DataError(f"--data-dir {data_dir}: folder does not exist")
    return find_layout_dir(spec, data_dir)
  home = dataset_home(name, root)
  marker = read_marker(home)
  if marker is None:
    how = (f"run `hrnn data prepare {name}`" if spec.embedded else
           f"run `hrnn data prepare {name}` (downloads {spec.repo_id}), place {spec.archive} at {home / spec.archive} "
           "and run it offline, or pass --data-dir pointing at an unpacked copy")
    raise DataError(f"dataset {name!r} is not prepared in {home}: {how}")
  return home / marker["layout_dir"]


def prepare(name: str, size: str = "small", root: str | Path | None = None, seed: int = 0) -> Path:
  """Makes a dataset ready on disk and returns its layout folder; a no-op when it is already there.

  Embedded datasets are generated (deterministically from `seed`) at `size` ("tiny" for tests and demos,
  "small", "full"); a copy of another size or seed is rebuilt. Real datasets are downloaded and unpacked;
  `size` and `seed` do not apply to them. A dataset of one's own audio (hrnn.data.folder.prepare_folder) is
  rebuilt from its source folder when its files changed; `size` and `seed` do not apply to it either.
  """
  spec = get_spec(name, root)
  home = dataset_home(name, root)
  if spec.own:
    return rebuild(name, root)
  if spec.embedded:
    return _generate(spec, home, size, seed)
  return _fetch(spec, home)


def _marker_matches(marker: dict | None, **want) -> bool:
  return marker is not None and all(marker.get(k) == v for k, v in want.items())


def _generate(spec: DatasetSpec, home: Path, size: str, seed: int) -> Path:
  if size not in SIZES:
    raise DataError(f"unknown size {size!r} for {spec.name}; use one of {', '.join(SIZES)}")
  marker = read_marker(home)
  if _marker_matches(marker, size=size, seed=seed) and not warn_if_changed(spec.name, home, "rebuilding it"):
    return home / marker["layout_dir"]
  if marker is not None and (marker.get("size"), marker.get("seed")) != (size, seed):
    # One copy per data root: runs that read the other copy (a longer scale's, e.g.) read this one when they next
    # load the dataset. Said out loud, since switching back costs another rebuild.
    old_size, old_seed = marker.get("size"), marker.get("seed")
    warnings.warn(DataWarning(
        f"{spec.name}: replacing the {old_size} copy (seed {old_seed}) in {home} with a {size} one (seed {seed}); "
        f"runs trained on the {old_size} copy need it back (`hrnn data prepare {spec.name} --size {old_size} --seed "
        f"{old_seed}`) or a data root of their own (HRNN_DATA)"), stacklevel=3)
  generator = importlib.import_module(GENERATORS[spec.name])
  scratch = scratch_dir(home.parent / f".{home.name}.partial")
  try:
    start = time.perf_counter()
    stats = generator.build(spec.name, scratch / "data", size, seed)
    marker = {"name": spec.name, "source": "generated", "size": size, "seed": seed, "layout_dir": "data",
              "seconds_to_build": round(time.perf_counter() - start, 2), **stats}
    (scratch / MARKER).write_text(json.dumps(marker, indent=1))
    write_manifest(scratch, scratch / "data")
    install(scratch, home)
  except BaseException:
    shutil.rmtree(scratch, ignore_errors=True)
    raise
  return home / "data"


def _fetch(spec: DatasetSpec, home: Path) -> Path:
  marker = read_marker(home)
  if _marker_matches(marker, source=spec.repo_id) and not warn_if_changed(spec.name, home, "unpacking it again"):
    return home / marker["layout_dir"]
  home.mkdir(parents=True, exist_ok=True)
  archive = home / spec.archive
  if archive.is_file():  # placed by hand (offline) or left by an earlier download
    digest = _sha256(archive)
  else:
    archive = _download(spec, home)
    digest = _verify(spec, archive)
  return _unpack(spec, home, archive, digest)


def _download(spec: DatasetSpec, home: Path) -> Path:
  # The one import inside a function here: the hub's errors load its HTTP stack (a fifth of a second), which
  # `hrnn --help` (it imports this module through hrnn.config) does not need.
  from huggingface_hub import errors

  page = f"https://huggingface.co/datasets/{spec.repo_id}"
  try:
    return Path(huggingface_hub.hf_hub_download(spec.repo_id, spec.archive, repo_type="dataset", local_dir=home))
  except errors.GatedRepoError:
    raise DataError(f"{spec.repo_id} is gated: accept its terms at {page} while logged in, then log in here "
                    "(`hf auth login`, or set HF_TOKEN) and run again") from None
  except errors.RepositoryNotFoundError:
    raise DataError(f"{spec.repo_id}: repository not found or not accessible with your token ({page})") from None
  except (errors.LocalEntryNotFoundError, errors.HfHubHTTPError, OSError) as e:
    raise DataError(f"cannot download {spec.archive} from {page} ({type(e).__name__}; offline?). Place the archive "
                    f"at {home / spec.archive} and run again, or pass --data-dir pointing at an unpacked copy") from None


def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True,
                                   desc=f"checking {path.name}", leave=False) as bar:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
      bar.update(len(block))
  return digest.hexdigest()


def _verify(spec: DatasetSpec, archive: Path) -> str:
  """SHA-256 of a downloaded archive, checked against the hub's (its etag is the LFS SHA-256)."""
  digest = _sha256(archive)
  url = huggingface_hub.hf_hub_url(spec.repo_id, spec.archive, repo_type="dataset")
  expected = (huggingface_hub.get_hf_file_metadata(url).etag or "").strip('"')
  if re.fullmatch(r"[0-9a-f]{64}", expected) and digest != expected:
    raise DataError(f"{archive}: SHA-256 {digest} does not match the hub's {expected}; the download is damaged: "
                    "delete the file and run `hrnn data prepare` again")
  return digest


def _unpack(spec: DatasetSpec, home: Path, archive: Path, digest: str) -> Path:
  scratch = scratch_dir(home / ".unpacking")
  try:
    with zipfile.ZipFile(archive) as z:
      for member in tqdm(z.infolist(), desc=f"unpacking {archive.name}", unit="file"):
        z.extract(member, scratch)
  except (zipfile.BadZipFile, EOFError, OSError) as e:
    shutil.rmtree(scratch, ignore_errors=True)
    raise DataError(f"{archive}: damaged or incomplete zip archive ({e}); delete it and run "
                    "`hrnn data prepare` again") from None
  target = home / UNPACKED
  shutil.rmtree(target, ignore_errors=True)
  scratch.rename(target)
  layout = find_layout_dir(spec, target)
  marker = {"name": spec.name, "source": spec.repo_id, "archive": spec.archive, "sha256": digest,
            "layout_dir": str(layout.relative_to(home))}
  write_manifest(home, layout)
  (home / MARKER).write_text(json.dumps(marker, indent=1))
  return layout
