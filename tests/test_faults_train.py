"""Faults around a run's files: a second trainer on one work directory, a full disk while checkpointing or writing
samples, a deleted or edited config.json. Each ends in one clear error (or warning) naming the culprit, and what
was already on disk stays intact. No case trains (nothing is compiled beyond a checkpoint's fingerprint)."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from hrnn.model import sampling
from hrnn.train import loop
from hrnn.train.checkpoint import CheckpointError, Checkpoints, CheckpointWarning, read_config
from hrnn.cli import main
from hrnn.data import dequantize
from train_fixtures import ITEMS, run_config, saved_run


@pytest.fixture
def small_disk(tmp_path):
  """A 16 MiB tmpfs (skipped where this process may not mount one)."""
  path = tmp_path / "disk"
  path.mkdir()
  if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(path)], capture_output=True).returncode:
    pytest.skip("mounting a tmpfs needs root")
  yield path
  subprocess.run(["umount", str(path)], capture_output=True)


def fill(disk) -> None:
  """Fills a file system up (until a write fails with ENOSPC)."""
  try:
    with open(disk / "filler", "ab") as f:
      while True:
        f.write(b"\0" * 4096)
        f.flush()
  except OSError as e:
    assert e.errno == errno.ENOSPC


def _digest(directory) -> dict[str, str]:
  return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(directory.rglob("*")) if p.is_file()}


def _state(config):
  return loop.init_state(config, loop.make_optimizer(config, loop.learning_rate_schedule(config, 10)))


def _restored_leaves(workdir, config, step):
  abstract = jax.eval_shape(lambda: _state(config).items())
  checkpoints = Checkpoints(workdir)
  items, _ = checkpoints.restore(abstract, step)
  checkpoints.close()
  as_numpy = lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)
                                  else x)
  return [as_numpy(x) for name in ITEMS for x in jax.tree.leaves(items[name])]


# -------------------------------------------------------------------------------------------- one trainer per run


# What a running trainer does to its work directory (loop.WorkdirLock), without importing JAX: an exclusive flock
# on lock.json, which holds its pid, host and start time.
HOLDER = """
import datetime, fcntl, json, os, socket, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
since = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode())
print("held", flush=True)
time.sleep(600)
"""


def test_second_trainer_stops_at_once_naming_the_running_one(tmp_path, capsys):
  """A process holding the work directory's lock (as a running `hrnn train` does) makes a second trainer stop
  before touching anything, naming its pid, host and start time; once that process is killed (SIGKILL: no
  clean-up), its stale record is taken over."""
  config = run_config(tmp_path / "data")
  saved_run(tmp_path / "run", config, step=4, steps_per_epoch=10)
  holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run" / loop.LOCK_FILE)],
                            stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    before = _digest(tmp_path / "run")
    start = time.perf_counter()
    assert main(["train", "--workdir", str(tmp_path / "run"), "--no-progress"]) == 2
    assert time.perf_counter() - start < 60  # at once: nothing loaded or compiled
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"hrnn train: error: {tmp_path / 'run'} is in use by another hrnn "
                                               f"train (pid {holder.pid} on {socket.gethostname()}, since 20")
    assert _digest(tmp_path / "run") == before
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  record = json.loads((tmp_path / "run" / "lock.json").read_text())
  assert record["pid"] == holder.pid  # the dead trainer's record is still there...
  lock = loop.WorkdirLock(tmp_path / "run")
  lock.acquire()  # ... and taken over
  assert json.loads((tmp_path / "run" / "lock.json").read_text())["pid"] == os.getpid()
  lock.release()


# ------------------------------------------------------------------------------------------------ a full disk


def test_full_disk_while_checkpointing_keeps_the_older_checkpoints(tmp_path, small_disk):
  config = run_config(tmp_path / "data")
  state = _state(config)
  checkpoints = Checkpoints(small_disk / "run", keep=3)
  checkpoints.save(3, state.items(), loop.checkpoint_meta(config, 3, 10))
  before = _digest(small_disk / "run")
  fill(small_disk)
  with pytest.raises(CheckpointError) as e:
    checkpoints.save(6, state.items(), loop.checkpoint_meta(config, 6, 10))
  checkpoints.close()
  message = str(e.value)
  assert "\n" not in message
  assert message.startswith(f"cannot write checkpoint {small_disk / 'run' / 'checkpoints' / '6'} (no space left on "
                            f"the device); the older checkpoints [3] are intact")
  assert sorted(p.name for p in (small_disk / "run" / "checkpoints").iterdir()) == ["3"]  # no temporary files
  assert _digest(small_disk / "run") == before
  (small_disk / "filler").unlink()
  leaves = _restored_leaves(small_disk / "run", config, 3)
  expected = [np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
              for name in ITEMS for x in jax.tree.leaves(state.items()[name])]
  assert all((a == b).all() for a, b in zip(leaves, expected, strict=True))


def test_failed_checkpoint_write_is_one_error(tmp_path, monkeypatch):
  """The same without a tmpfs: the write fails with an injected OSError(ENOSPC)."""
  config = run_config(tmp_path / "data")
  state = _state(config)
  checkpoints = Checkpoints(tmp_path / "run")
  checkpoints.save(3, state.items(), loop.checkpoint_meta(config, 3, 10))
  before = _digest(tmp_path / "run")

  def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / "checkpoints" / "6"))

  monkeypatch.setattr(checkpoints._manager, "save", no_space)
  with pytest.raises(CheckpointError, match=r"cannot write checkpoint .*checkpoints/6 \(OSError: \[Errno 28\] No "
                     r"space left on device.*\); the older checkpoints \[3\] are intact"):
    checkpoints.save(6, state.items(), loop.checkpoint_meta(config, 6, 10))
  checkpoints.close()
  assert _digest(tmp_path / "run") == before


def test_full_disk_while_writing_samples_leaves_no_partial_wav(small_disk):
  out = small_disk / "samples"
  out.mkdir()
  fill(small_disk)
  with pytest.raises(sampling.SamplingError, match=r"cannot write sample_0000[01]\.wav \(no space left on the "
                     r"device\); no partial file was left"):
    sink = sampling._WavSink([out / "sample_00000.wav", out / "sample_00001.wav"], "mu-law")
    for _ in range(4):
      sink.write(np.full((2, 16000), 200, np.int32))
    sink.close()
  assert list(out.iterdir()) == []


def test_failed_sample_write_leaves_no_partial_wav(tmp_path, monkeypatch):
  """Without a tmpfs: the second chunk's write fails with an injected OSError(ENOSPC)."""
  import soundfile

  sink = sampling._WavSink([tmp_path / "sample_00000.wav"], "mu-law")
  sink.write(np.full((1, 1000), 200, np.int32))
  assert [p.name for p in tmp_path.iterdir()] == [".sample_00000.wav.partial"]  # written under a temporary name

  def no_space(self, data):
    raise OSError(errno.ENOSPC, "No space left on device")

  monkeypatch.setattr(soundfile.SoundFile, "write", no_space)
  with pytest.raises(sampling.SamplingError, match=r"cannot write sample_00000\.wav \(OSError"):
    sink.write(np.full((1, 1000), 200, np.int32))
  assert list(tmp_path.iterdir()) == []


def test_written_samples_are_renamed_into_place(tmp_path):
  import soundfile

  sink = sampling._WavSink([tmp_path / "sample_00000.wav"], "mu-law")
  sink.write(np.full((1, 800), 255, np.int32))
  sink.write(np.full((1, 200), 0, np.int32))
  sink.close()
  assert [p.name for p in tmp_path.iterdir()] == ["sample_00000.wav"]
  audio, rate = soundfile.read(tmp_path / "sample_00000.wav")
  assert rate == 16000 and len(audio) == 1000  # both chunks, in order, as 16-bit PCM of the decoded tokens
  for tokens, part in ((np.full(800, 255), audio[:800]), (np.full(200, 0), audio[800:])):
    assert np.abs(part - np.clip(dequantize(tokens, "mu-law"), -1, 1)).max() <= 1 / 2**15


# ------------------------------------------------------------------------------------------- the run's config


def test_deleted_config_json_is_taken_from_the_newest_checkpoint(tmp_path):
  config = run_config(tmp_path / "data")
  saved_run(tmp_path / "run", config, step=4, steps_per_epoch=10)
  (tmp_path / "run" / "config.json").unlink()
  with pytest.warns(CheckpointWarning, match=f"{tmp_path / 'run' / 'config.json'} is missing; using the config "
                    f"recorded in checkpoint {tmp_path / 'run' / 'checkpoints' / '4'}"):
    assert read_config(tmp_path / "run") == config
  assert read_config(tmp_path / "empty") is None


def test_edited_config_json_names_the_field(tmp_path):
  """A config.json edited beside checkpoints: the error names each field that differs from the checkpoint's
  config (not an unreadable checkpoint or a changed dataset), and leaves every file as it was."""
  config = run_config(tmp_path / "data")
  saved_run(tmp_path / "run", config, step=4, steps_per_epoch=10)
  edited = dataclasses.replace(config, learning_rate=0.02, ema_decay=0.99)
  checkpoints = Checkpoints(tmp_path / "run")
  before = _digest(tmp_path / "run")
  with pytest.raises(CheckpointError) as e:
    loop._check_checkpoint_config(checkpoints, edited)
  checkpoints.close()
  assert "learning_rate: 0.01 -> 0.02; ema_decay: 0.999 -> 0.99" in str(e.value)
  assert f"checkpoint {tmp_path / 'run' / 'checkpoints' / '4'} was written with" in str(e.value)
  assert _digest(tmp_path / "run") == before
  checkpoints = Checkpoints(tmp_path / "run")
  loop._check_checkpoint_config(checkpoints, dataclasses.replace(config, steps=20, log_every=5))  # resumable fields
  checkpoints.close()


def test_a_torn_last_metrics_line_is_left_out(tmp_path):
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss_bits": 8.0}\n{"step": 2, "lo')
  assert loop.read_metrics(tmp_path) == [{"step": 1, "loss_bits": 8.0}]
  (tmp_path / "metrics.jsonl").write_text('{"step": 1, "lo\n{"step": 2, "loss_bits": 8.0}\n')
  with pytest.raises(CheckpointError, match="metrics.jsonl: line 1 is not JSON"):
    loop.read_metrics(tmp_path)


def test_log_window_round_trips_exactly():
  """The per-step metrics carried by a checkpoint come back as the same float32 / int32 values (non-finite
  included), so the resumed run's next log line averages the same numbers."""
  window = [{"loss_bits": np.float32(8.123456), "grad_norm": np.float32(np.inf), "lr": np.float32(0.002),
             "skipped": np.int32(1)},
            {"loss_bits": np.float32(np.nan), "grad_norm": np.float32(1e-7), "lr": np.float32(0.002),
             "skipped": np.int32(2)}]
  config = run_config("/data")
  meta = json.loads(json.dumps(loop.checkpoint_meta(config, 6, 10, window)))
  restored = loop.log_window(meta)
  for a, b in zip(window, restored, strict=True):
    for k in loop.STEP_METRICS:
      assert type(a[k]) is type(b[k]) and (a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k]))), k


def test_full_disk_while_writing_the_token_cache_leaves_no_partial_file(tmp_path):
  """A data root with room for the audio but not for its token cache: one DataError naming the cache, nothing
  left in the cache folder, the audio untouched."""
  from hrnn import data

  data.prepare("sc09-espeak", size="tiny", root=tmp_path / "prepared")
  audio_bytes = sum(p.stat().st_size for p in (tmp_path / "prepared").rglob("*") if p.is_file())
  disk = tmp_path / "disk"
  disk.mkdir()
  size = audio_bytes + 600 * 1024  # + a few pages per file and folder; the train split's tokens take ~1.3 MB
  if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                    capture_output=True).returncode:
    pytest.skip("mounting a tmpfs needs root")
  try:
    shutil.copytree(tmp_path / "prepared", disk / "root")
    before = _digest(disk / "root")
    with pytest.raises(data.DataError, match=r"cannot write the token cache .*/sc09-espeak/tokens/train-mu-law-.*"
                       r"\.arrow \(no space left on the device\); no partial file was left"):
      data.load_split("sc09-espeak", "train", root=disk / "root")
    assert list((disk / "root" / "sc09-espeak" / "tokens").iterdir()) == []
    assert _digest(disk / "root") == before
  finally:
    subprocess.run(["umount", str(disk)], capture_output=True)
