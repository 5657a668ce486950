"""From files to training batches: split index -> `datasets.Dataset` -> fixed-shape padded batches on a mesh.

A split is a `datasets.Dataset` with columns path, length, tokens (plus label for the SC09 layout), memory-mapped
from an Arrow file that the first load writes by decoding and quantizing each file once (one file at a time, so
a split, YouTubeMix included, never sits in memory whole). Its record (SPLIT-METHOD-KEY.json) holds the files
skipped and the Arrow file's size and SHA-256: a cache found damaged (truncated, overwritten) is rebuilt with a
warning. Files that fail to decode (corrupt, NaN or infinite samples) are skipped with a warning naming them.

`batches` yields {"tokens": int32 [B, T], "mask": float32 [B, T]} where mask = 1 on real samples, 0 on padding.
Per epoch the examples are shuffled by a permutation drawn from (seed, epoch); the last batch is completed with
all-padding rows (mask 0), so num_batches = ceil(n / B) and every example is seen exactly once per epoch.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from tqdm.auto import tqdm

from hrnn.data.audio import AudioError, probe, read_audio
from hrnn.data.layout import VALIDATION_LIST, TESTING_LIST, split_files
from hrnn.data.manifest import TOKENS, DataWarning, warn_if_changed
from hrnn.data.quantization import SILENCE_TOKEN, check_method, check_unit, quantize
from hrnn.data.sources import dataset_home, locate
from hrnn.data.specs import DataError, DatasetSpec, check_split, get_spec

PAD_TOKEN = SILENCE_TOKEN  # token at padded positions (mask 0); 128 decodes to silence
TOKEN_FORMAT = 2  # bump when tokenization changes, so cached token files are rebuilt (2: SaShiMi's float32 rules)
REBUILD = "run `hrnn data prepare {name}` to rebuild it"


@dataclasses.dataclass(frozen=True)
class SplitIndex:
  """The usable files of a split, and what happened to the others.

  Attributes:
    columns: "path" (str), "length" (samples after resampling, cut to the spec length) and, for the SC09 layout,
      "label" (0..9).
    skipped: (file, reason) for every file left out: corrupt, truncated, empty, or listed but missing.
    resampled / downmixed / cut: how many files are read at another rate / have several channels / are longer
      than the spec length (handled as documented in hrnn.data.audio; cut to the spec length).
  """

  columns: dict[str, list]
  skipped: tuple[tuple[str, str], ...]
  resampled: int
  downmixed: int
  cut: int


def index_split(spec: DatasetSpec, layout_dir: str | Path, split: str) -> SplitIndex:
  """Lists a split's files and reads their headers (no decoding)."""
  files = split_files(spec, layout_dir, split)
  list_name = VALIDATION_LIST if split == "valid" else TESTING_LIST
  skipped = [(name, f"listed in {list_name} but missing") for name in files.missing]
  columns: dict[str, list] = {"path": [], "length": []}
  if files.labels is not None:
    columns["label"] = []
  resampled = downmixed = cut = 0
  for i, path in enumerate(files.paths):
    try:
      info = probe(path)
    except AudioError as e:  # its message starts with the path
      skipped.append((str(path), str(e).removeprefix(f"{path}: ")))
      continue
    frames = info.frames_at(spec.sample_rate)
    resampled += info.sample_rate != spec.sample_rate
    downmixed += info.channels > 1
    cut += frames > spec.length
    columns["path"].append(str(path))
    columns["length"].append(min(frames, spec.length))
    if files.labels is not None:
      columns["label"].append(files.labels[i])
  return SplitIndex(columns, tuple(skipped), resampled, downmixed, cut)


def tokens_of(path: str | Path, spec: DatasetSpec, method: str, unit: int | None = None) -> np.ndarray:
  """One example's tokens: the file read at the spec's rate, cut to spec.length, quantized on its own (uint8 [L])."""
  return quantize(read_audio(path, spec.sample_rate)[:spec.length], method, unit=unit)


def _cache_key(spec: DatasetSpec, method: str, paths: tuple[Path, ...], unit: int | None = None) -> str:
  """Changes whenever a file of the split, its size or its modification time, or the tokenization changes."""
  stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
  text = json.dumps([TOKEN_FORMAT, spec.name, spec.length, spec.sample_rate, method, unit, stats])
  return hashlib.sha256(text.encode()).hexdigest()[:16]


def _decoded(path: str, spec: DatasetSpec, method: str, unit: int | None = None) -> np.ndarray | AudioError:
  try:
    return tokens_of(path, spec, method, unit)
  except AudioError as e:
    return e


def _datasets():
  """The `datasets` library, imported here only (on first use): it takes seconds, and `hrnn --help` imports this
  module through hrnn.config without needing it."""
  import datasets
  import datasets.arrow_writer

  return datasets


def _write_tokens(spec: DatasetSpec, index: SplitIndex, method: str, path: Path,
                  unit: int | None = None) -> list[tuple[str, str]]:
  """Decodes every indexed file once into an Arrow file (written in chunks of ~16M tokens, then renamed).

  Returns (file, reason) of the files that failed to decode (left out of the Arrow file).
  """
  datasets = _datasets()
  features = {"path": datasets.Value("string"), "length": datasets.Value("int32"),
              "tokens": datasets.List(datasets.Value("uint8"))}
  if "label" in index.columns:
    features["label"] = datasets.Value("int32")
  rows = len(index.columns["path"])
  chunk = max(1, (1 << 24) // spec.length)
  partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
  writer = datasets.arrow_writer.ArrowWriter(features=datasets.Features(features), path=str(partial))
  decode = functools.partial(_decoded, spec=spec, method=method, unit=unit)
  failed = []
  try:
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 1) as pool, \
         tqdm(total=rows, desc=f"{spec.name}: tokenizing", unit="clip", leave=False) as bar:
      for first in range(0, rows, chunk):
        batch = {key: values[first:first + chunk] for key, values in index.columns.items()}
        decoded = list(pool.map(decode, batch["path"]))
        good = [i for i, t in enumerate(decoded) if not isinstance(t, AudioError)]
        failed += [(p, str(t).removeprefix(f"{p}: ")) for p, t in zip(batch["path"], decoded)
                   if isinstance(t, AudioError)]
        batch = {key: [values[i] for i in good] for key, values in batch.items()}
        batch["tokens"] = [decoded[i] for i in good]
        if good:
          writer.write_batch(batch)
        bar.update(len(decoded))
    writer.finalize()
    partial.rename(path)
  except BaseException as e:
    partial.unlink(missing_ok=True)
    if isinstance(e, OSError):  # Arrow's write errors carry no errno or file name
      full = shutil.disk_usage(path.parent).free < (1 << 20)
      raise DataError(f"cannot write the token cache {path} ({'no space left on the device' if full else e}); "
                      f"no partial file was left. Free some space, or use another data root (--data-root)") from None
    raise
  return failed


def _sha256(path: Path) -> str:
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  return digest.hexdigest()


def _damage(path: Path, report_path: Path) -> str | None:
  """Why a cached Arrow file does not match its record (None when it does): missing, size or SHA-256 differ."""
  try:
    report = json.loads(report_path.read_text())
    size, digest = report["bytes"], report["sha256"]
  except (ValueError, KeyError, TypeError):
    return f"its record {report_path} is damaged"
  if not path.is_file():
    return "it is missing"
  if path.stat().st_size != size:
    return f"it holds {path.stat().st_size} bytes where {size} were written"
  if _sha256(path) != digest:
    return "its SHA-256 differs from the one recorded when it was written"
  return None


def token_file(spec: DatasetSpec, layout_dir: Path, split: str, method: str, cache_dir: Path,
               unit: int | None = None) -> tuple[Path, dict]:
  """The split's tokens as an Arrow file in `cache_dir`, built on first use (and again when the files change).

  Returns:
    (Arrow file, its index report {"skipped": [[file, why]], "resampled", "downmixed", "cut"}).
  """
  files = split_files(spec, layout_dir, split)
  key = _cache_key(spec, method, files.paths, unit)
  path = cache_dir / f"{split}-{method}-{key}.arrow"
  report_path = path.with_suffix(".json")
  if report_path.is_file():
    damage = _damage(path, report_path)
    if damage is None:
      return path, json.loads(report_path.read_text())
    warnings.warn(DataWarning(f"token cache {path} is damaged ({damage}); rebuilding it from the audio files"),
                  stacklevel=3)
  index = index_split(spec, layout_dir, split)
  if not index.columns["path"]:
    raise DataError(f"{layout_dir}: split {split!r} of {spec.name} has no usable audio files"
                    + "".join(f"; {p}: {why}" for p, why in index.skipped[:3]))
  cache_dir.mkdir(parents=True, exist_ok=True)
  for stale in cache_dir.glob(f"{split}-{method}-*"):  # older versions; never another process's partial file
    if key not in stale.name and not stale.name.endswith(".partial"):
      stale.unlink(missing_ok=True)
  failed = _write_tokens(spec, index, method, path, unit)
  if len(failed) == len(index.columns["path"]):
    path.unlink()
    raise DataError(f"{layout_dir}: split {split!r} of {spec.name} has no usable audio files"
                    + "".join(f"; {p}: {why}" for p, why in failed[:3]))
  report = {"skipped": [list(s) for s in (*index.skipped, *failed)], "resampled": index.resampled,
            "downmixed": index.downmixed, "cut": index.cut, "bytes": path.stat().st_size,
            "sha256": _sha256(path)}
  tmp = report_path.with_name(f"{report_path.name}.{os.getpid()}.partial")
  try:
    tmp.write_text(json.dumps(report))
    tmp.replace(report_path)
  finally:
    tmp.unlink(missing_ok=True)
  return path, report


def load_split(name: str, split: str, root: str | Path | None = None, quantization: str | None = None, *,
               data_dir: str | Path | None = None, minmax_unit: int | None = None):
  """One split of a dataset as a memory-mapped `datasets.Dataset`.

  The first load decodes and quantizes every file once into ROOT/NAME/tokens/SPLIT-METHOD-KEY.arrow (KEY
  follows the files' names, sizes and modification times, so changed data is re-read); later loads map that
  file, so no split, YouTubeMix included, is ever held in memory whole.

  Args:
    name: a key of DATASETS.
    split: "train", "valid" or "test".
    root: data root (default `default_root()`); the dataset must have been prepared there unless `data_dir`.
    quantization: "mu-law" or "linear"; default the dataset's own (its `hrnn.data.specs` entry).
    minmax_unit: samples per min-max scaling unit: None = each example as a whole (the default, as the paper
      trained), `hrnn.data.quantization.SASHIMI_CHUNK` = SaShiMi's 131,072-sample YouTubeMix chunks.
    data_dir: an unpacked copy of the dataset to read instead (no network, no prepare needed); its token
      cache still goes to ROOT/NAME/tokens.
  Returns:
    Dataset with columns path (str), length (int: real samples), tokens (uint8 numpy array [length], quantized
    per example) and, for SC09-layout datasets, label (0..9 for zero..nine).
  Raises:
    DataError: dataset not prepared, layout broken (missing split list, empty folders) or no usable file.
  Warns:
    DataWarning: naming the files skipped because they are corrupt, truncated, empty or missing.
  """
  datasets = _datasets()
  spec = get_spec(name, root)
  method = check_method(quantization or spec.quantization)
  layout = locate(name, root, data_dir)
  if data_dir is None:
    warn_if_changed(name, dataset_home(name, root), REBUILD.format(name=name))
  path, report = token_file(spec, layout, check_split(split), method, dataset_home(name, root) / TOKENS,
                            check_unit(minmax_unit))
  skipped = report["skipped"]
  if skipped:
    shown = "; ".join(f"{file}: {why}" for file, why in skipped[:3])
    more = f" (and {len(skipped) - 3} more; `hrnn data info {name}` lists all)" if len(skipped) > 3 else ""
    warnings.warn(DataWarning(f"{name} {split}: skipped {len(skipped)} unusable file(s): {shown}{more}"),
                  stacklevel=2)
  ds = datasets.Dataset.from_file(str(path), split=split)
  ds.set_format("numpy", columns=["tokens"], output_all_columns=True, dtype=np.uint8)
  return ds


def num_batches(ds, batch_size: int) -> int:
  """Batches per epoch: ceil(len(ds) / batch_size) (the last one is completed with padding rows)."""
  if batch_size <= 0:
    raise DataError(f"batch_size={batch_size}: must be positive")
  return math.ceil(len(ds) / batch_size)


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
  """The example order of an epoch: a permutation of range(n) drawn from (seed, epoch)."""
  return np.random.default_rng([seed, epoch]).permutation(n)


def crop_offset(length: int, seq_len: int, seed: int, epoch: int, example: int) -> int:
  """Random-crop start of one example in one epoch, uniform in [0, length - seq_len] (0 when it fits)."""
  if length <= seq_len:
    return 0
  return int(np.random.default_rng([seed, epoch, example]).integers(0, length - seq_len + 1))


def batches(ds, batch_size: int, seq_len: int, *, seed: int, epoch: int, start: int = 0, crop: bool = False,
            shard_index: int = 0, shard_count: int = 1) -> Iterator[dict[str, np.ndarray]]:
  """Fixed-shape padded batches of one epoch, deterministic for (seed, epoch).

  Examples shorter than seq_len are padded with PAD_TOKEN and mask 0. Longer ones are cut to seq_len: from a
  random offset when `crop` (drawn from (seed, epoch, example index)), else from the start.

  Args:
    ds: a split from load_split (any dataset whose rows carry "tokens").
    batch_size: B, the global batch size (all hosts together).
    seq_len: T, tokens per row.
    seed, epoch: the shuffle and crops are a function of these alone.
    start: first batch index to yield (resuming mid-epoch yields exactly the remaining batches).
    shard_index, shard_count: this host's rows of each global batch, rows
      [shard_index * B / shard_count, (shard_index + 1) * B / shard_count).
  Yields:
    {"tokens": int32 [B / shard_count, T], "mask": float32 [B / shard_count, T]}.
  """
  if seq_len <= 0:
    raise DataError(f"seq_len={seq_len}: must be positive")
  if shard_count <= 0 or not 0 <= shard_index < shard_count or batch_size % shard_count:
    raise DataError(f"shard_index={shard_index}, shard_count={shard_count}: need 0 <= index < count and "
                    f"batch_size={batch_size} divisible by shard_count")
  if seed < 0 or epoch < 0:
    raise DataError(f"seed={seed}, epoch={epoch}: must be non-negative")
  total = num_batches(ds, batch_size)
  order = epoch_order(len(ds), seed, epoch)
  rows = batch_size // shard_count
  for b in range(start, total):
    first = b * batch_size + shard_index * rows
    chosen = order[first:first + rows]
    tokens = np.full((rows, seq_len), PAD_TOKEN, np.int32)
    mask = np.zeros((rows, seq_len), np.float32)
    if len(chosen):
      examples = ds[[int(i) for i in chosen]]["tokens"]
      for r, (i, example) in enumerate(zip(chosen, examples)):
        offset = crop_offset(len(example), seq_len, seed, epoch, int(i)) if crop else 0
        piece = np.asarray(example[offset:offset + seq_len])
        tokens[r, :len(piece)] = piece
        mask[r, :len(piece)] = 1.0
    yield {"tokens": tokens, "mask": mask}
