"""Audio datasets: the paper's three (SC09, Beethoven, YouTubeMix from Hugging Face) and three embedded ones the
kit generates on the machine (sc09-espeak, beethoven-piano, piano-minute), all read by the same loader.

  prepare(name, size="small", root=None, seed=0) -> Path              build / download; no-op when present
  prepare_folder(source, name, *, quantization="mu-law", clip_seconds=8.0, root=None) -> Path   one's own audio
  load_split(name, split, root=None, quantization=None, *, data_dir=None, minmax_unit=None) -> datasets.Dataset
  batches(ds, batch_size, seq_len, *, seed, epoch, start=0, crop=False, shard_index=0, shard_count=1)
      -> iterator of {"tokens": int32 [B, T], "mask": float32 [B, T]}
  num_batches(ds, batch_size) -> int
  quantize(x, method, *, unit=None, constant="sashimi") -> uint8 (SaShiMi's tokens, bit for bit)
  dequantize(tokens, method) -> float32 in [-1, 1]
  read_audio(path, sample_rate=16000) -> float32 mono, write_wav(path, x, sample_rate)
"""

from hrnn.data.audio import AudioError, read_audio, write_wav
from hrnn.data.folder import prepare_folder
from hrnn.data.pipeline import PAD_TOKEN, DataWarning, batches, load_split, num_batches
from hrnn.data.quantization import METHODS, QuantizationError, dequantize, quantize
from hrnn.data.sources import SIZES, locate, prepare
from hrnn.data.specs import DATASETS, DIGITS, SPLITS, DataError, DatasetSpec, default_root, get_spec

__all__ = [
    "AudioError", "DATASETS", "DIGITS", "DataError", "DataWarning", "DatasetSpec", "METHODS", "PAD_TOKEN",
    "QuantizationError", "SIZES", "SPLITS", "batches", "default_root", "dequantize", "get_spec", "load_split",
    "locate", "num_batches", "prepare", "prepare_folder", "quantize", "read_audio", "write_wav",
]
