"""Faults a user can cause, through the command line: each ends in one `hrnn COMMAND: error: ...` line naming the
culprit (file, flag, value or config field) with exit status 2, or, where hrnn works around it, in a one-line
warning naming it; no traceback, and nothing already on disk changes.

Every case fails before anything is compiled (seconds each). `python tests/test_faults.py` runs the same sweep
outside pytest and prints a table: tracebacks, wrong exit statuses and messages that miss the culprit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))

from train_fixtures import MODEL  # noqa: E402

ERROR, WARNING = "error", "warning"


@dataclasses.dataclass(frozen=True)
class Case:
  """One fault: the command (a function of the Env), the outcome ("error": status 2 and one error line;
  "warning": status 0 and a warning line) and the texts that line must contain (the culprit, what to do)."""

  name: str
  argv: object  # Env -> list[str]
  outcome: str
  names: object  # Env -> tuple of texts the message must contain
  setup: object = None  # Env -> None: damages something before the command
  check: object = None  # (Env, stdout) -> None: more assertions on a result that must be right
  data: bool = False  # the case damages the dataset: it gets its own copy


class Env:
  """Paths the cases use, built once: a prepared tiny dataset, a run directory holding a checkpoint, a NaN WAV,
  a plain file, and (when this process may mount) a read-only and a full file system."""

  def __init__(self, top: Path):
    from hrnn import data
    from hrnn.config import TrainConfig
    from train_fixtures import saved_run

    self.top = top
    self.clean_root = top / "clean-data"
    data.prepare("sc09-espeak", size="tiny", root=self.clean_root)
    data.load_split("sc09-espeak", "train", root=self.clean_root)  # builds the token cache once
    self.clean_run = top / "clean-run"
    config = TrainConfig(model=MODEL, preset="smoke", dataset="sc09-espeak", data_root=str(self.clean_root),
                         batch_size=8, seq_len=800, steps=8, epochs=None, learning_rate=0.01, warmup_steps=2,
                         checkpoint_every=4, log_every=1, eval_batch_size=8, mesh_data=1)
    saved_run(self.clean_run, config, step=4, steps_per_epoch=10)
    self.file = top / "plain-file"
    self.file.write_text("not a folder\n")
    self.nan_wav = top / "nan.wav"
    sf.write(self.nan_wav, np.array([0.1, np.nan, np.inf, 0.2] * 8000, np.float32), 16000, subtype="FLOAT")
    self.short_wav = top / "short.wav"
    sf.write(self.short_wav, np.zeros(100, np.float32), 16000)
    self.readonly = self._mount(top / "readonly", "ro,size=1m")
    self.full = self._mount(top / "full", "size=64k")
    if self.full is not None:  # fill it up
      with contextlib.suppress(OSError), open(self.full / "filler", "wb") as f:
        while True:
          f.write(b"\0" * 4096)
          f.flush()

  def fresh(self, name: str, data: bool = False) -> None:
    """A per-case copy of the run directory, and of the clean data root when the case damages it."""
    from hrnn.train.checkpoint import read_config, write_config

    self.root = self.top / name / "data" if data else self.clean_root
    if data:
      shutil.copytree(self.clean_root, self.root, symlinks=True)
    self.run = self.top / name / "run"
    shutil.copytree(self.clean_run, self.run)
    write_config(self.run, dataclasses.replace(read_config(self.run), data_root=str(self.root)))
    self.layout = self.root / "sc09-espeak" / "data"
    self.new_run = self.top / name / "new-run"

  @staticmethod
  def _mount(path: Path, options: str) -> Path | None:
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return path if done.returncode == 0 else None

  def close(self):
    for mount in (self.readonly, self.full):
      if mount is not None:
        subprocess.run(["umount", str(mount)], capture_output=True)


def digest(*folders: Path) -> dict[str, str]:
  """Relative path -> SHA-256 of every file under the folders (what must not change)."""
  return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
          for folder in folders if folder.is_dir() for p in sorted(folder.rglob("*"))
          # The trainer's lock record may appear; token caches are derived (and keyed by the files' paths).
          if p.is_file() and p.name != "lock.json" and "tokens" not in p.parts}


def a_wav(env) -> Path:
  return next((env.layout / "three").glob("*.wav"))


def _nan_into_dataset(env):
  shutil.copy(env.nan_wav, a_wav(env))


def _truncate_cache(root):
  arrow = next((root / "sc09-espeak" / "tokens").glob("train-*.arrow"))
  arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])


def _flip_cache(root):
  arrow = next((root / "sc09-espeak" / "tokens").glob("train-*.arrow"))
  data = bytearray(arrow.read_bytes())
  data[len(data) // 2] ^= 0xFF
  arrow.write_bytes(bytes(data))


def _garble_cache_record(root):
  next((root / "sc09-espeak" / "tokens").glob("train-*.json")).write_text("{not json")


def _edit_config(env, **changes):
  path = env.run / "config.json"
  config = json.loads(path.read_text())
  config.update(changes)
  path.write_text(json.dumps(config))


def _write(path_of, text):
  return lambda env: path_of(env).write_text(text)


def _check_not_silent(env, out):
  """The NaN file is skipped as corrupt (named), not counted as a silent clip."""
  summary = json.loads(out)
  assert summary["splits"]["train"]["silent"] == 0
  assert [why for path, why in summary["splits"]["train"]["skipped"] if path == str(a_wav(env))] == [
      "holds NaN or infinite samples; the file is corrupt: replace or delete it"]


def _unusable(*names):
  return lambda env: names


TRAIN = lambda env, *flags: ["train", "--workdir", str(env.new_run), "--preset", "smoke", "--dataset",
                             "sc09-espeak", "--data-root", str(env.root), "--no-progress", *flags]
RESUME = lambda env, *flags: ["train", "--workdir", str(env.run), "--no-progress", *flags]
SAMPLE = lambda env, *flags: ["sample", "--preset", "smoke", "--out", str(env.top / "samples"), *flags]
EVAL = lambda env, *flags: ["eval", "--workdir", str(env.run), *flags]
INFO = lambda env, *flags: ["data", "info", "sc09-espeak", "--root", str(env.root), "--examples", "0", *flags]

CASES = [
    # ----------------------------------------------------------------------------------------------------- data
    Case("data-prepare-root-is-a-file", lambda e: ["data", "prepare", "sc09-espeak", "--size", "tiny", "--root",
                                                   str(e.file)], ERROR, lambda e: (str(e.file),)),
    Case("data-prepare-root-under-a-file", lambda e: ["data", "prepare", "sc09-espeak", "--size", "tiny", "--root",
                                                      str(e.file / "x")], ERROR, lambda e: (str(e.file),)),
    Case("data-prepare-root-read-only", lambda e: ["data", "prepare", "sc09-espeak", "--size", "tiny", "--root",
                                                   str(e.readonly / "data")], ERROR,
         lambda e: (str(e.readonly), "read-only")),
    Case("data-prepare-unknown-size", lambda e: ["data", "prepare", "sc09-espeak", "--size", "huge"], ERROR,
         _unusable("--size", "huge")),
    Case("data-prepare-bad-seed", lambda e: ["data", "prepare", "sc09-espeak", "--seed", "x"], ERROR,
         _unusable("--seed", "'x'")),
    Case("data-info-unknown-dataset", lambda e: ["data", "info", "nope"], ERROR, _unusable("nope",)),
    Case("data-info-not-prepared", lambda e: ["data", "info", "sc09-espeak", "--root", str(e.top / "empty")],
         ERROR, lambda e: (str(e.top / "empty" / "sc09-espeak"), "hrnn data prepare sc09-espeak")),
    Case("data-info-data-dir-missing", lambda e: INFO(e, "--data-dir", str(e.top / "nowhere")), ERROR,
         lambda e: ("--data-dir", str(e.top / "nowhere"))),
    Case("data-info-data-dir-is-a-file", lambda e: INFO(e, "--data-dir", str(e.file)), ERROR,
         lambda e: (str(e.file),)),
    Case("data-info-damaged-marker", INFO, ERROR, lambda e: (str(e.root / "sc09-espeak" / "hrnn_dataset.json"),),
         setup=_write(lambda e: e.root / "sc09-espeak" / "hrnn_dataset.json", "{cut sh"), data=True),
    Case("data-info-lost-file", INFO, WARNING, lambda e: ("changed since", "lost", "hrnn data prepare sc09-espeak"),
         setup=lambda e: a_wav(e).unlink(), data=True),
    Case("data-info-added-file", INFO, WARNING, lambda e: ("changed since", "extra.wav: added"),
         setup=lambda e: shutil.copy(a_wav(e), e.layout / "three" / "extra.wav"), data=True),
    Case("data-info-nan-audio", lambda e: INFO(e, "--json"), WARNING, lambda e: (str(a_wav(e)), "size changed"),
         setup=_nan_into_dataset, check=_check_not_silent, data=True),
    Case("data-info-garbage-wav", INFO, WARNING, lambda e: ("changed since",),
         setup=_write(a_wav, "RIFF but not really"), data=True),
    Case("data-info-plot-under-a-file", lambda e: INFO(e, "--plot", str(e.file / "plot.png")), ERROR,
         lambda e: (str(e.file),)),
    Case("data-info-plot-read-only", lambda e: INFO(e, "--plot", str(e.readonly / "plot.png")), ERROR,
         lambda e: (str(e.readonly), "read-only")),
    Case("data-info-bad-quantization", lambda e: INFO(e, "--quantization", "a-law"), ERROR,
         _unusable("--quantization", "a-law")),
    Case("data-prepare-lost-file-rebuilds", lambda e: ["data", "prepare", "sc09-espeak", "--size", "tiny", "--root",
                                                       str(e.root)], WARNING, lambda e: ("lost", "rebuilding it"),
         setup=lambda e: a_wav(e).unlink(), check=lambda e, out: a_wav(e).is_file(), data=True),
    # ---------------------------------------------------------------------------------------------------- train
    Case("train-lr-inf", lambda e: TRAIN(e, "--lr", "inf"), ERROR, _unusable("--lr", "inf", "finite")),
    Case("train-lr-nan", lambda e: TRAIN(e, "--lr", "nan"), ERROR, _unusable("--lr", "nan", "finite")),
    Case("train-lr-negative", lambda e: TRAIN(e, "--lr", "-0.1"), ERROR, _unusable("learning_rate", "-0.1")),
    Case("train-lr-not-a-number", lambda e: TRAIN(e, "--lr", "fast"), ERROR, _unusable("--lr", "fast")),
    Case("train-batch-size-0", lambda e: TRAIN(e, "--batch-size", "0"), ERROR, _unusable("batch_size", "0")),
    Case("train-steps-0", lambda e: TRAIN(e, "--steps", "0"), ERROR, _unusable("steps", "0")),
    Case("train-steps-negative", lambda e: TRAIN(e, "--steps", "-5"), ERROR, _unusable("steps", "-5")),
    Case("train-seq-len-0", lambda e: TRAIN(e, "--seq-len", "0"), ERROR, _unusable("seq_len", "0")),
    Case("train-grad-accum-3", lambda e: TRAIN(e, "--grad-accum", "3", "--batch-size", "8"), ERROR,
         _unusable("batch_size", "grad_accum=3")),
    Case("train-log-every-0", lambda e: TRAIN(e, "--log-every", "0"), ERROR, _unusable("log_every", "0")),
    Case("train-checkpoint-every-0", lambda e: TRAIN(e, "--checkpoint-every", "0"), ERROR,
         _unusable("checkpoint_every", "0")),
    Case("train-keep-checkpoints-0", lambda e: TRAIN(e, "--keep-checkpoints", "0"), ERROR,
         _unusable("keep_checkpoints", "0")),
    Case("train-warmup-negative", lambda e: TRAIN(e, "--warmup-steps", "-1"), ERROR,
         _unusable("warmup_steps", "-1")),
    Case("train-remat-chunk-0", lambda e: TRAIN(e, "--remat", "block", "--remat-chunk", "0"), ERROR,
         _unusable("remat_chunk", "0")),
    Case("train-unknown-preset", lambda e: TRAIN(e, "--preset", "huge"), ERROR, _unusable("huge", "preset")),
    Case("train-unknown-dataset", lambda e: TRAIN(e, "--dataset", "nope"), ERROR, _unusable("nope",)),
    Case("train-data-not-prepared", lambda e: TRAIN(e, "--data-root", str(e.top / "empty")), ERROR,
         lambda e: (str(e.top / "empty" / "sc09-espeak"), "hrnn data prepare")),
    Case("train-workdir-is-a-file", lambda e: TRAIN(e)[:2] + [str(e.file)] + TRAIN(e)[3:], ERROR,
         lambda e: (str(e.file),)),
    Case("train-workdir-under-a-file", lambda e: TRAIN(e)[:2] + [str(e.file / "run")] + TRAIN(e)[3:], ERROR,
         lambda e: (str(e.file),)),
    Case("train-workdir-read-only", lambda e: TRAIN(e)[:2] + [str(e.readonly / "run")] + TRAIN(e)[3:], ERROR,
         lambda e: (str(e.readonly), "read-only")),
    Case("train-workdir-full-disk", lambda e: TRAIN(e)[:2] + [str(e.full / "run")] + TRAIN(e)[3:], ERROR,
         lambda e: (str(e.full), "space")),
    Case("train-config-missing", lambda e: ["train", "--workdir", str(e.top / "r"), "--config", str(e.top / "no.json")],
         ERROR, lambda e: (str(e.top / "no.json"),)),
    Case("train-config-not-json", lambda e: ["train", "--workdir", str(e.top / "r"), "--config", str(e.file)], ERROR,
         lambda e: (str(e.file),)),
    Case("train-new-workdir-without-preset", lambda e: ["train", "--workdir", str(e.top / "r")], ERROR,
         lambda e: (str(e.top / "r"), "--preset")),
    Case("train-damaged-config-json", RESUME, ERROR, lambda e: (str(e.run / "config.json"),),
         setup=_write(lambda e: e.run / "config.json", "{\"model\": ")),
    Case("train-config-json-unknown-field", RESUME, ERROR, lambda e: (str(e.run / "config.json"), "bogus"),
         setup=lambda e: _edit_config(e, bogus=1)),
    Case("train-edited-config-json", RESUME, ERROR, lambda e: ("learning_rate: 0.01 -> 0.05", "config.json"),
         setup=lambda e: _edit_config(e, learning_rate=0.05)),
    Case("train-edited-config-json-batch", RESUME, ERROR, lambda e: ("batch_size: 8 -> 4", "config.json"),
         setup=lambda e: _edit_config(e, batch_size=4, eval_batch_size=4)),
    Case("train-deleted-config-json", lambda e: RESUME(e, "--batch-size", "4"), ERROR,
         lambda e: ("config.json is missing", "batch_size: 8 -> 4"), setup=lambda e: (e.run / "config.json").unlink()),
    Case("train-other-run-in-workdir", lambda e: RESUME(e, "--preset", "cpu"), ERROR,
         lambda e: (str(e.run), "preset")),
    Case("train-locked-workdir", RESUME, ERROR, lambda e: ("in use by another hrnn train", f"pid {os.getpid()}"),
         setup=lambda e: _hold_lock(e)),
    # A dead trainer's lock record is taken over: the command gets as far as the config check.
    Case("train-stale-lock", RESUME, ERROR, lambda e: ("learning_rate: 0.01 -> 0.05",),
         setup=lambda e: (_edit_config(e, learning_rate=0.05), (e.run / "lock.json").write_text(
             json.dumps({"pid": 999999999, "host": "gone", "since": "2020-01-01T00:00:00+00:00"})))),
    Case("train-damaged-metrics-jsonl", RESUME, ERROR, lambda e: (str(e.run / "metrics.jsonl"), "line 1"),
         setup=_write(lambda e: e.run / "metrics.jsonl", '{"step": 1, "lo\n{"step": 2, "loss_bits": 8.0}\n')),
    Case("train-data-root-is-a-file", lambda e: TRAIN(e, "--data-root", str(e.file)), ERROR,
         lambda e: (str(e.file),)),
    # -------------------------------------------------------------------------------------------------- sample
    Case("sample-seconds-nan", lambda e: SAMPLE(e, "--seconds", "nan"), ERROR, _unusable("--seconds", "nan")),
    Case("sample-seconds-inf", lambda e: SAMPLE(e, "--seconds", "inf"), ERROR, _unusable("--seconds", "inf")),
    Case("sample-seconds-0", lambda e: SAMPLE(e, "--seconds", "0"), ERROR, _unusable("--seconds", "0")),
    Case("sample-seconds-negative", lambda e: SAMPLE(e, "--seconds", "-1"), ERROR, _unusable("--seconds", "-1")),
    Case("sample-temperature-nan", lambda e: SAMPLE(e, "--temperature", "nan"), ERROR,
         _unusable("--temperature", "nan")),
    Case("sample-temperature-inf", lambda e: SAMPLE(e, "--temperature", "inf"), ERROR,
         _unusable("--temperature", "inf")),
    Case("sample-temperature-0", lambda e: SAMPLE(e, "--temperature", "0"), ERROR, _unusable("--temperature", "0")),
    Case("sample-n-0", lambda e: SAMPLE(e, "--n", "0"), ERROR, _unusable("--n", "0")),
    Case("sample-batch-size-0", lambda e: SAMPLE(e, "--batch-size", "0"), ERROR, _unusable("--batch-size", "0")),
    Case("sample-prompt-seconds-nan", lambda e: SAMPLE(e, "--prompt-seconds", "nan"), ERROR,
         _unusable("--prompt-seconds", "nan")),
    Case("sample-unknown-preset", lambda e: SAMPLE(e, "--preset", "huge"), ERROR, _unusable("huge",)),
    Case("sample-prompt-missing", lambda e: SAMPLE(e, "--prompt", str(e.top / "no.wav")), ERROR,
         lambda e: (f"{e.top / 'no.wav'}: no such file",)),
    Case("sample-prompt-is-a-folder", lambda e: SAMPLE(e, "--prompt", str(e.top)), ERROR,
         lambda e: (f"{e.top}: not a file",)),
    Case("sample-prompt-not-audio", lambda e: SAMPLE(e, "--prompt", str(e.file)), ERROR, lambda e: (str(e.file),)),
    Case("sample-prompt-nan", lambda e: SAMPLE(e, "--prompt", str(e.nan_wav)), ERROR,
         lambda e: (str(e.nan_wav), "NaN")),
    Case("sample-prompt-too-short", lambda e: SAMPLE(e, "--prompt", str(e.short_wav)), ERROR,
         lambda e: (str(e.short_wav), "prompt")),
    Case("sample-checkpoint-prompt-nan", lambda e: ["sample", "--checkpoint", str(e.run), "--prompt", str(e.nan_wav),
                                                    "--out", str(e.top / "samples")], ERROR,
         lambda e: (str(e.nan_wav), "NaN")),
    Case("sample-checkpoint-is-a-file", lambda e: ["sample", "--checkpoint", str(e.file)], ERROR,
         lambda e: (str(e.file),)),
    Case("sample-checkpoint-missing", lambda e: ["sample", "--checkpoint", str(e.top / "nowhere")], ERROR,
         lambda e: (str(e.top / "nowhere"), "hrnn train")),
    Case("sample-out-is-a-file", lambda e: SAMPLE(e)[:-1] + [str(e.file)], ERROR, lambda e: (str(e.file),)),
    Case("sample-out-read-only", lambda e: SAMPLE(e)[:-1] + [str(e.readonly / "s")], ERROR,
         lambda e: (str(e.readonly), "read-only")),
    # ---------------------------------------------------------------------------------------------------- eval
    Case("eval-batch-size-0", lambda e: EVAL(e, "--batch-size", "0"), ERROR, _unusable("--batch-size", "0")),
    Case("eval-batch-size-negative", lambda e: EVAL(e, "--batch-size", "-4"), ERROR, _unusable("--batch-size", "-4")),
    Case("eval-unknown-split", lambda e: EVAL(e, "--split", "dev"), ERROR, _unusable("--split", "dev")),
    Case("eval-workdir-missing", lambda e: ["eval", "--workdir", str(e.top / "nowhere")], ERROR,
         lambda e: (str(e.top / "nowhere"), "hrnn train")),
    Case("eval-workdir-is-a-file", lambda e: ["eval", "--workdir", str(e.file)], ERROR, lambda e: (str(e.file),)),
    Case("eval-data-not-prepared", lambda e: EVAL(e, "--data-root", str(e.top / "empty")), ERROR,
         lambda e: (str(e.top / "empty" / "sc09-espeak"), "hrnn data prepare")),
    Case("eval-damaged-checkpoint", EVAL, ERROR, lambda e: (str(e.run / "checkpoints" / "4"), "unreadable"),
         setup=lambda e: _damage_checkpoint(e)),
    # -------------------------------------------------------------------------------------------- info, metrics
    Case("info-unknown-preset", lambda e: ["info", "--preset", "huge"], ERROR, _unusable("huge",)),
]


def _hold_lock(env):
  from hrnn.train.loop import WorkdirLock

  lock = WorkdirLock(env.run)
  lock.acquire()
  env.held = lock


def _damage_checkpoint(env):
  """Truncates every array-data file of the EMA weights (what `hrnn eval` reads)."""
  for path in (env.run / "checkpoints" / "4" / "ema").rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def run_case(env, case: Case) -> dict:
  """Runs one case in this process; returns {"status", "stdout", "stderr", "traceback"}."""
  from hrnn.cli import main

  env.fresh(case.name, case.data)
  env.held = None
  if case.setup is not None:
    case.setup(env)
  before = digest(env.root, env.run, env.top / "samples")
  stdout, stderr = io.StringIO(), io.StringIO()
  traceback = None
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
    warnings.simplefilter("always")
    # Shown on stderr as outside a test (pytest otherwise records them).
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
        warnings.formatwarning(message, category, filename, lineno, line))
    try:
      status = main(case.argv(env))
    except SystemExit as e:  # argparse
      status = e.code
    except Exception as e:  # a traceback: a bug
      status, traceback = None, f"{type(e).__name__}: {e}"
  if env.held is not None:
    env.held.release()
  return {"status": status, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(), "traceback": traceback,
          "changed": before != digest(env.root, env.run, env.top / "samples") and case.outcome == ERROR}


def verdict(env, case: Case, result: dict) -> list[str]:
  """What is wrong with a case's result (empty when right)."""
  if result["traceback"]:
    return [f"traceback: {result['traceback'][:300]}"]
  problems = []
  lines = [line for line in result["stderr"].splitlines() if f": {case.outcome}: " in line]
  messages = [line for line in result["stderr"].splitlines() if line.startswith("hrnn") and
              (": error: " in line or ": warning: " in line)]
  expected_status = 2 if case.outcome == ERROR else 0
  if result["status"] != expected_status:
    problems.append(f"exit status {result['status']}, expected {expected_status}")
  if case.outcome == ERROR and (len(lines) != 1 or result["stderr"].splitlines()[-1] != lines[0]):
    problems.append(f"expected one error line, last: {result['stderr'].strip().splitlines()[-1:]}")
  if not lines:
    problems.append(f"no {case.outcome} line in {result['stderr'][-300:]!r}")
  else:
    missing = [n for n in case.names(env) if not any(n in line for line in messages)]
    if missing:
      problems.append(f"message misses {missing}: {messages}")
  if result["changed"]:
    problems.append("files on disk changed")
  if not problems and case.check is not None:
    try:
      case.check(env, result["stdout"])
    except AssertionError as e:
      problems.append(f"wrong result: {e}")
  return problems


NEEDS = {"readonly": lambda c: "read-only" in c.name, "full": lambda c: "full-disk" in c.name}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
  env = Env(tmp_path_factory.mktemp("faults"))
  yield env
  env.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fault(env, case):
  for mount, needs in NEEDS.items():
    if needs(case) and getattr(env, mount) is None:
      pytest.skip(f"needs a tmpfs mount ({mount}): run as root")
  result = run_case(env, case)
  problems = verdict(env, case, result)
  assert not problems, "\n".join(problems) + "\n" + result["stderr"][-2000:]


@pytest.mark.parametrize("damage, why", [(_truncate_cache, "bytes where"), (_flip_cache, "SHA-256"),
                                         (_garble_cache_record, "record")])
def test_damaged_token_cache_is_rebuilt_with_a_warning(env, damage, why):
  from hrnn import data
  from hrnn.data.pipeline import tokens_of

  env.fresh(f"cache-{damage.__name__}", data=True)
  data.load_split("sc09-espeak", "train", root=env.root)  # the copy's own cache (keyed by the files' paths)
  damage(env.root)
  with pytest.warns(data.DataWarning, match=f"token cache .*train-.*arrow is damaged .*{why}.*rebuilding"):
    ds = data.load_split("sc09-espeak", "train", root=env.root)
  clean = data.load_split("sc09-espeak", "train", root=env.clean_root)
  assert len(ds) == len(clean) > 0
  spec = data.get_spec("sc09-espeak")
  for i in (0, len(ds) // 2, len(ds) - 1):
    assert ds[i]["path"].removeprefix(str(env.root)) == clean[i]["path"].removeprefix(str(env.clean_root))
    assert (ds[i]["tokens"] == tokens_of(ds[i]["path"], spec, spec.quantization)).all()
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # rebuilt: the next load is quiet
    data.load_split("sc09-espeak", "train", root=env.root)


def main():
  """Runs the sweep, prints one line per case and the totals (tracebacks, wrong statuses or messages)."""
  import tempfile

  with tempfile.TemporaryDirectory() as top:
    env = Env(Path(top))
    try:
      counts = {"cases": 0, "ok": 0, "traceback": 0, "wrong": 0}
      for case in CASES:
        counts["cases"] += 1
        try:
          result = run_case(env, case)
        except Exception as e:  # the case's setup needs what this version lacks
          result = {"status": None, "stdout": "", "stderr": "", "traceback": f"setup: {type(e).__name__}: {e}",
                    "changed": False}
        problems = verdict(env, case, result)
        kind = "traceback" if result["traceback"] else ("wrong" if problems else "ok")
        counts[kind] += 1
        print(f"{kind:<9} {case.name:<36} {'; '.join(problems)[:240]}", flush=True)
      print(json.dumps(counts))
    finally:
      env.close()


if __name__ == "__main__":
  main()
