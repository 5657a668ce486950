"""Reading and writing audio files, with the bad-input rules every dataset shares.

Documented handling (nothing is dropped silently):
  * other sample rates are resampled (polyphase, scipy.signal.resample_poly) to the requested rate;
  * multi-channel files are down-mixed to mono by averaging the channels;
  * corrupt, empty (0 frames), truncated files, and files holding NaN or infinite samples raise AudioError naming
    the file (loaders skip it with a warning). A WAV file is truncated when its header declares more sample bytes
    than the file holds (libsndfile would otherwise read the shorter part without complaint);
  * formats libsndfile cannot open (e.g. M4A, or MP3 with an old libsndfile) are decoded by librosa (audioread,
    which needs ffmpeg or GStreamer) when it can; otherwise the file is unreadable (AudioError).
"""

from __future__ import annotations

import dataclasses
import math
import struct
import warnings
from pathlib import Path

import librosa  # lazy itself: its decoders load on first use
import numpy as np
import soundfile as sf

from hrnn.data.specs import SAMPLE_RATE, DataError


class AudioError(DataError):
  """An audio file cannot be used (corrupt, truncated, empty); the message names it."""


@dataclasses.dataclass(frozen=True)
class AudioInfo:
  """What a file's header says: frames at its own rate, its rate and its channel count."""

  frames: int
  sample_rate: int
  channels: int

  def frames_at(self, sample_rate: int) -> int:
    """Frames after resampling to `sample_rate` (the length resample() returns)."""
    return resampled_length(self.frames, self.sample_rate, sample_rate)


def _wav_data_chunk(path: Path) -> tuple[int, int] | None:
  """(offset, declared size) of a RIFF/WAVE file's data chunk, or None when the file is not plain RIFF WAV."""
  with open(path, "rb") as f:
    head = f.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
      return None
    while True:
      chunk = f.read(8)
      if len(chunk) < 8:
        return None
      chunk_id, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
      if chunk_id == b"data":
        return f.tell(), size
      f.seek(size + (size & 1), 1)  # chunks are word-aligned


def probe(path: str | Path) -> AudioInfo:
  """Reads a file's header (no decoding) and checks that the audio is all there.

  Raises:
    AudioError: the file cannot be opened as audio, has no frames, or is a truncated WAV file.
  """
  path = Path(path)
  if not path.is_file():
    raise AudioError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
  try:
    info = sf.info(str(path))
  except (sf.LibsndfileError, RuntimeError) as e:
    raise AudioError(f"{path}: not readable audio ({e}); the file is corrupt: replace or delete it") from None
  if info.frames <= 0:
    raise AudioError(f"{path}: contains no audio frames; replace or delete it")
  chunk = _wav_data_chunk(path)
  if chunk is not None:
    offset, declared = chunk
    available = path.stat().st_size - offset
    if declared not in (0, 0xFFFFFFFF) and declared > available:  # 0 / all ones: size left open by a streamer
      raise AudioError(f"{path}: truncated WAV (header declares {declared} data bytes, file holds {available}); "
                       "the file was cut short, e.g. by an interrupted copy: replace or delete it")
  return AudioInfo(frames=info.frames, sample_rate=info.samplerate, channels=info.channels)


def resampled_length(frames: int, from_rate: int, to_rate: int) -> int:
  """Output length of resample(): ceil(frames * up / down) with up/down = to_rate/from_rate in lowest terms."""
  g = math.gcd(from_rate, to_rate)
  return math.ceil(frames * (to_rate // g) / (from_rate // g))


def resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
  """Polyphase resampling of mono audio [T] -> [resampled_length(T)] (anti-aliased, deterministic)."""
  if from_rate == to_rate:
    return x
  from scipy import signal  # the one import inside a function here: seconds to import, only when a file needs it

  g = math.gcd(from_rate, to_rate)
  return signal.resample_poly(x, to_rate // g, from_rate // g).astype(np.float32)


def downmix(x: np.ndarray) -> np.ndarray:
  """Mono from [T] or [T, channels] audio: the mean over channels."""
  return x if x.ndim == 1 else x.mean(axis=1, dtype=np.float32)


def _decode_with_librosa(path: Path) -> tuple[np.ndarray, int] | None:
  """(float32 [T] or [T, channels], rate) of a file libsndfile cannot open, decoded by librosa (audioread), or
  None when librosa cannot decode it either. WAV files are libsndfile's alone (a corrupt one stays corrupt)."""
  if path.suffix.lower() in (".wav", ".wave"):
    return None
  try:
    with warnings.catch_warnings():  # librosa warns that soundfile failed before it tries audioread
      warnings.simplefilter("ignore")
      x, rate = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
  except Exception:  # no backend (ffmpeg / GStreamer), unknown format, damaged file: all mean unreadable
    return None
  if x.size == 0:
    return None
  return (x if x.ndim == 1 else x.T), int(rate)


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
  """Reads an audio file as float32 mono at `sample_rate`.

  16-bit PCM is scaled to [-1, 1) (int16 / 2^15, as the authors' code). Stereo is down-mixed and other rates
  are resampled (module docstring).

  Returns:
    float32 [T] with T = probe(path).frames_at(sample_rate) (for files libsndfile reads).
  Raises:
    AudioError: naming the file, when it is corrupt, truncated, empty, unreadable or holds non-finite samples.
  """
  path = Path(path)
  try:
    info = probe(path)
  except AudioError:
    decoded = _decode_with_librosa(path)
    if decoded is None:
      raise
    x, rate = decoded
  else:
    try:
      x, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError) as e:
      raise AudioError(f"{path}: cannot decode audio ({e}); replace or delete it") from None
    if len(x) != info.frames:
      raise AudioError(f"{path}: decoded {len(x)} frames but the header declares {info.frames}; the file is "
                       "damaged: replace or delete it")
  if not np.isfinite(x).all():  # float WAVs can hold them; quantized they would pass for silence
    raise AudioError(f"{path}: holds NaN or infinite samples; the file is corrupt: replace or delete it")
  return resample(downmix(x), rate, sample_rate)


def write_wav(path: str | Path, x: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
  """Writes float audio [T] in [-1, 1] as a 16-bit PCM mono WAV file (values outside are clipped).

  Returns:
    The path written (parent folders are created).
  """
  path = Path(path)
  x = np.asarray(x, np.float32)
  if x.ndim != 1:
    raise DataError(f"{path}: write_wav expects mono audio [T], got shape {x.shape}")
  path.parent.mkdir(parents=True, exist_ok=True)
  sf.write(str(path), np.clip(x, -1.0, 1.0), sample_rate, subtype="PCM_16", format="WAV")
  return path
