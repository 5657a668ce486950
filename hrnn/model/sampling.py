"""Step-wise generation: HarmonicRNN one token at a time, in constant memory and constant work per token.

Every layer class holds a step form beside its parallel form (`decode_params`, `init_state`, `step` in
hrnn/model/lru.py, blocks.py, pooling.py, embedding.py, harmonic_rnn.py; the state of each is typed, e.g.
`hrnn.model.harmonic_rnn.State`).
This module drives them fast:

- `StepModel`: the model's step-form arrays (`HarmonicRNN.decode_params`: a pytree, matmuls that share an input
  fused) with `init_state(batch)` and `step(state, token)`.
- `prefill(model, tokens)`: the parallel forward over a prompt that also returns the state after it.
- Runs of tokens are nested `lax.scan`s over the pooling hierarchy. With pool factors p_0..p_{L-1} and total pool
  R = prod p, time splits into blocks of R tokens. A token at depth m steps levels 0..m only (levels 0..m-1 close
  a pooling window and step their inner level); the first token of a block has depth L. A block is

    block    = token(depth L); after(L)
    after(1) = for j = 1 .. p_0-1: token(depth 0, offset j)                                  after(0) = {}
    after(m) = for j = 0 .. p_{m-1}-1: [token(depth m-1, offset j) if j > 0]; after(m-1)     (m >= 2)

  so each token runs exactly the layers it needs. The only branch, `j > 0` at levels >= 2, runs once per >= 2
  tokens and keeps a single copy of each token kind in the compiled program (short compiles). Runs start on a
  block boundary: a prompt's whole blocks are prefilled and its last few tokens forced through the loop; a length
  that is not a multiple of R runs the last block to its end and drops the surplus. `StepModel.step` (a
  `lax.switch` on the depth) takes single steps at any position.
- Sampling is categorical with temperature, keyed by (seed, stream, position): a stream's samples do not depend on
  the batch size or on how the run is chunked.
- `generate`: batches of streams, prompt prefill, tokens decoded (mu-law or linear) and appended to 16 kHz WAV
  files chunk by chunk, so memory does not grow with the length.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import soundfile as sf
from flax import nnx
from tqdm.auto import tqdm

from hrnn.model import harmonic_rnn
from hrnn.data import dequantize, get_spec, quantize, read_audio
from hrnn.data.specs import SAMPLE_RATE
from hrnn.config import SAMPLE_BATCH
from hrnn.errors import HrnnError
from hrnn.model.harmonic_rnn import HarmonicRNN, ModelDecode, State

# Tokens per compiled call when streaming: 0.1 s of audio, a progress update every few seconds on a CPU.
CHUNK_TOKENS = 1_600

# emit(extra, pos, logits [B, K]) -> (extra, next input token [B]): what a run does with each step's logits.
Emit = Callable[[Any, jax.Array, jax.Array], tuple[Any, jax.Array]]


class SamplingError(HrnnError, ValueError):
  """Bad generation arguments (counts, temperature, prompt)."""


@flax.struct.dataclass
class StepModel:
  """HarmonicRNN in step form: its arrays (`HarmonicRNN.decode_params`), a pytree, so it passes through jit.

    state = sm.init_state(batch)
    state, logits = sm.step(state, token)    # token = x_{t-1} (START_TOKEN at t = 0); logits predict x_t
  """

  params: ModelDecode

  @classmethod
  def from_model(cls, model: HarmonicRNN) -> StepModel:
    return cls(_decode_params(model))

  @property
  def pool_factors(self) -> tuple[int, ...]:
    return self.params.pool_factors

  @property
  def total_pool(self) -> int:
    return int(np.prod(self.pool_factors, dtype=np.int64))

  def init_state(self, batch: int) -> State:
    """The state before the first token (position 0, all zeros)."""
    return HarmonicRNN.init_state(self.params, batch)

  def step(self, state: State, token: jax.Array) -> tuple[State, jax.Array]:
    """One token at any position: int [B] -> (state, logits [B, num_classes]); `HarmonicRNN.step` at the depth
    of the position, chosen by a `lax.switch` (the nested scans of `sample_chunk` avoid this per-token branch)."""
    factors = self.pool_factors
    depth, offset = harmonic_rnn.step_depth(factors, state.pos)
    branches = [functools.partial(HarmonicRNN.step, depth=m) for m in range(len(factors) + 1)]
    return jax.lax.switch(depth, branches, self.params, state, token, offset)


@nnx.jit
def _decode_params(model: HarmonicRNN) -> ModelDecode:
  return model.decode_params()


@nnx.jit
def prefill(model: HarmonicRNN, tokens: jax.Array) -> tuple[jax.Array, State]:
  """`HarmonicRNN.prefill` compiled: (logits [B, T, K], state after tokens [B, T]; its next input is x_{T-1})."""
  return model.prefill(tokens)


def _run_blocks(params: ModelDecode, carry: tuple, n_blocks: jax.Array, emit: Emit) -> tuple:
  """Runs `n_blocks` (may be traced) blocks of R tokens from carry = (state, token, extra) at a multiple of R,
  as nested scans over the pooling hierarchy (module docstring); `emit` turns each step's logits into the next
  input."""
  factors = params.pool_factors

  def token_at(depth, carry, offset):
    state, token, extra = carry
    pos = state.pos
    state, logits = HarmonicRNN.step(params, state, token, offset, depth=depth)
    extra, token = emit(extra, pos, logits)
    return state, token, extra

  def after(m, carry):
    """The R_m - 1 tokens after a token of depth >= m, R_m = p_0 ... p_{m-1}."""
    if m == 0:
      return carry
    if m == 1:
      window_step = lambda carry, offset: (token_at(0, carry, offset), None)
      return jax.lax.scan(window_step, carry, jnp.arange(1, factors[0], dtype=jnp.int32))[0]

    def window_step(carry, offset):
      # Offset 0 is the token that opened this window (already taken by the caller); a branch here runs once
      # per R_{m-1} >= 2 tokens and keeps one copy of each token kind in the compiled program.
      carry = jax.lax.cond(offset > 0, lambda c: token_at(m - 1, c, offset), lambda c: c, carry)
      return after(m - 1, carry), None

    return jax.lax.scan(window_step, carry, jnp.arange(factors[m - 1], dtype=jnp.int32))[0]

  def block(_, carry):
    return after(len(factors), token_at(len(factors), carry, jnp.zeros((), jnp.int32)))

  return jax.lax.fori_loop(0, n_blocks, block, carry)


def categorical(keys: jax.Array, pos: jax.Array, logits: jax.Array, temperature: jax.Array) -> jax.Array:
  """Draws token ~ softmax(logits / temperature) per row by inverse CDF with u = uniform(fold_in(key, pos)).

  One uniform per stream instead of a Gumbel variate per class (whose random bits cost about 5% of a paper-preset
  step on a CPU). keys [B], logits [B, K] -> int32 [B].
  """
  u = jax.vmap(lambda key: jax.random.uniform(jax.random.fold_in(key, pos)))(keys)
  scaled = logits / temperature
  cdf = jnp.cumsum(jnp.exp(scaled - jnp.max(scaled, axis=-1, keepdims=True)), axis=-1)  # [B, K] unnormalised
  token = jnp.sum(cdf < u[:, None] * cdf[:, -1:], axis=-1)
  return jnp.minimum(token, logits.shape[-1] - 1).astype(jnp.int32)


def _sample_emit(extra, pos, logits):
  tokens, keys, temperature, start, forced, forced_end = extra
  index = pos - start
  given = jax.lax.dynamic_index_in_dim(forced, jnp.minimum(index, forced.shape[1] - 1), axis=1, keepdims=False)
  token = jnp.where(pos < forced_end, given, categorical(keys, pos, logits, temperature))
  tokens = jax.lax.dynamic_update_slice(tokens, token[:, None], (0, index))
  return (tokens, keys, temperature, start, forced, forced_end), token


@functools.partial(jax.jit, static_argnames="length")
def sample_chunk(step_model: StepModel, state: State, token: jax.Array, keys: jax.Array, temperature: jax.Array,
                 n_blocks: jax.Array, forced: jax.Array, forced_end: jax.Array, *,
                 length: int) -> tuple[State, jax.Array, jax.Array]:
  """Takes n_blocks * R <= length steps from a state at a multiple of R; one compiled program for any n_blocks.

  Args:
    step_model: the model.
    state: step state at position t0, a multiple of R.
    token: int [B], the input at t0 (the last token so far, or START_TOKEN at t0 = 0).
    keys: [B] PRNG keys, one per stream; the token at position t is drawn with fold_in(key, t).
    temperature: scalar > 0 dividing the logits.
    n_blocks: int scalar, the number of blocks of R tokens to take.
    forced: int [B, R], given tokens for positions t0, t0+1, ... (the rest of a prompt, zero-padded) ...
    forced_end: ... taken instead of samples at positions < forced_end (t0 when there are none).
    length: static size of the returned buffer.

  Returns:
    (state, last token, tokens int32 [B, length]) holding the tokens of positions t0 .. t0 + n_blocks R - 1.
  """
  tokens = jnp.zeros((token.shape[0], length), jnp.int32)
  extra = (tokens, keys, jnp.asarray(temperature, jnp.float32), state.pos, forced, forced_end)
  state, token, (tokens, *_) = _run_blocks(step_model.params, (state, token, extra), n_blocks, _sample_emit)
  return state, token, tokens


def chunk_length(total_pool: int, chunk_tokens: int = CHUNK_TOKENS) -> int:
  """`chunk_tokens` rounded up to a whole number of blocks of `total_pool` tokens."""
  return -(-chunk_tokens // total_pool) * total_pool


def sample_stream(step_model: StepModel, state: State, token: jax.Array, n_tokens: int, *, keys: jax.Array,
                  temperature: float = 1.0, forced: np.ndarray | None = None,
                  chunk_tokens: int = CHUNK_TOKENS) -> Iterator[np.ndarray]:
  """The tokens of positions t0 .. t0 + n_tokens - 1 from a state at t0 (a multiple of R), in int32 [B, n] chunks.

  Positions t0 .. t0+F-1 take the given `forced` tokens [B, F] (F < R, the part of a prompt after its last whole
  block; see `start`), the rest are sampled. Whole blocks are computed (the last one may run past n_tokens; the
  surplus is dropped). The next chunk is dispatched before a chunk is handed out, so the caller's decoding and
  writing overlap the computation.
  """
  total_pool = step_model.total_pool
  t0 = int(state.pos)
  if t0 % total_pool:
    raise SamplingError(f"sample_stream needs a state at a multiple of {total_pool} tokens, got position {t0}; "
                        "build it with hrnn.model.sampling.start")
  length = chunk_length(total_pool, chunk_tokens)
  batch = token.shape[0]
  forced = np.zeros((batch, 0), np.int32) if forced is None else np.asarray(forced, np.int32)
  forced_end = jnp.int32(t0 + forced.shape[1])
  forced = jnp.asarray(np.pad(forced, ((0, 0), (0, total_pool - forced.shape[1]))))
  temperature = jnp.float32(temperature)
  # A chunk's state and token come back placed like the (replicated) parameters, committed, and jit compiles anew
  # when an argument's placement changes: place the first chunk's so too, or every run would compile twice.
  state, token = jax.device_put((state, token), jax.tree.leaves(step_model.params)[0].sharding)
  done, pending = 0, None
  while done < n_tokens:
    n = min(length, n_tokens - done)
    state, token, tokens = sample_chunk(step_model, state, token, keys, temperature, jnp.int32(-(-n // total_pool)),
                                        forced, forced_end, length=length)
    if pending is not None:
      yield np.asarray(pending[0][:, :pending[1]])
    pending, done = (tokens, n), done + n
  if pending is not None:
    yield np.asarray(pending[0][:, :pending[1]])


def start(model: HarmonicRNN, step_model: StepModel, prompt: np.ndarray | None,
          batch: int) -> tuple[State, jax.Array, np.ndarray, np.ndarray]:
  """Where a run begins: (state at t0, input at t0, the prompt's tokens from t0 (forced), its tokens before t0).

  t0 is the last multiple of R within the prompt: the prompt's whole blocks go through the parallel forward
  (`prefill`), the few tokens after them are forced through the fast step loop (`sample_stream`), so every run
  starts on a block boundary. prompt: int [batch, P] or None (start from scratch at t0 = 0).
  """
  empty = np.zeros((batch, 0), np.int32)
  if prompt is None or prompt.shape[1] < step_model.total_pool:
    start_token = jnp.full((batch,), harmonic_rnn.START_TOKEN, jnp.int32)
    return step_model.init_state(batch), start_token, empty if prompt is None else prompt, empty
  t0 = prompt.shape[1] - prompt.shape[1] % step_model.total_pool
  _, state = prefill(model, jnp.asarray(prompt[:, :t0]))
  return state, jnp.asarray(prompt[:, t0 - 1]), prompt[:, t0:], prompt[:, :t0]


def _teacher_emit(extra, pos, logits):
  inputs, out = extra
  out = jax.lax.dynamic_update_slice(out, logits[:, None], (0, pos, 0))
  token = jax.lax.dynamic_index_in_dim(inputs, pos + 1, axis=1, keepdims=False)
  return (inputs, out), token


@jax.jit
def teacher_forced(step_model: StepModel, tokens: jax.Array) -> jax.Array:
  """Logits of tokens [B, T] computed step by step from position 0 through the same nested scans as sampling.

  Equal to the parallel forward `model(tokens)` [B, T, num_classes], in constant memory per step.
  """
  batch, length = tokens.shape
  total_pool = step_model.total_pool
  n_blocks = -(-length // total_pool)
  inputs = harmonic_rnn.shift_right(harmonic_rnn.pad_to_multiple(tokens, total_pool))
  inputs = jnp.pad(inputs, ((0, 0), (0, 1)))  # the input after the last step is read but never used
  out = jnp.zeros((batch, n_blocks * total_pool, step_model.params.head_b.shape[0]), jnp.float32)
  carry = (step_model.init_state(batch), inputs[:, 0], (inputs, out))
  _, _, (_, out) = _run_blocks(step_model.params, carry, n_blocks, _teacher_emit)
  return out[:, :length]


def resolve(model_or_checkpoint: HarmonicRNN | str | Path, quantization: str | None) -> tuple[HarmonicRNN, str]:
  """The model in eval mode (a copy: the caller's keeps its mode) and its token encoding: `quantization` if given,
  else the checkpoint's dataset's, else mu-law."""
  if isinstance(model_or_checkpoint, HarmonicRNN):
    model = nnx.clone(model_or_checkpoint)
    model.eval()
    return model, quantization or "mu-law"
  # The one import inside a function here: hrnn.train builds on hrnn.model, which reaches up to it only to load a
  # checkpoint.
  from hrnn.train.checkpoint import load_model

  model, run_config = load_model(model_or_checkpoint, ema=True)
  return model, quantization or get_spec(run_config.dataset, run_config.data_root).quantization


def prompt_tokens(path: str | Path, seconds: float, quantization: str) -> np.ndarray:
  """The first `seconds` of an audio file as int32 tokens [P] (16 kHz mono, quantized as the datasets are)."""
  audio = read_audio(path, SAMPLE_RATE)
  n = round(seconds * SAMPLE_RATE)
  if n < 1 or len(audio) < n:
    raise SamplingError(f"{path}: holds {len(audio) / SAMPLE_RATE:.3f} s of audio; a prompt of {seconds} s needs "
                        "a longer file or fewer prompt seconds")
  return quantize(audio[:n], quantization).astype(np.int32)


def _prompt_rows(prompt: np.ndarray | None, n_samples: int, num_classes: int) -> np.ndarray | None:
  """The prompt as int32 [n_samples, P] (a single [P] prompt is shared by every stream)."""
  if prompt is None:
    return None
  prompt = np.asarray(prompt)
  if prompt.ndim == 1:
    prompt = np.broadcast_to(prompt, (n_samples, prompt.shape[0]))
  if prompt.ndim != 2 or prompt.shape[0] != n_samples or prompt.shape[1] == 0:
    raise SamplingError(f"prompt must be tokens [P] or [n_samples={n_samples}, P] with P >= 1, got shape "
                        f"{prompt.shape}")
  if not np.issubdtype(prompt.dtype, np.integer) or prompt.min() < 0 or prompt.max() >= num_classes:
    raise SamplingError(f"prompt must hold integer tokens in 0..{num_classes - 1}; quantize audio with "
                        "hrnn.data.quantize first")
  return np.ascontiguousarray(prompt, np.int32)


class _WavSink:
  """Streams of decoded tokens appended to 16 kHz 16-bit WAV files, one per stream, as chunks arrive.

  Each file is written under a temporary name (.NAME.partial) and renamed by `close`, so that a failure (a full
  disk) or an interruption leaves no partial WAV: `discard` removes the temporary files.
  """

  def __init__(self, paths: list[Path], quantization: str):
    self.dequantize = functools.partial(dequantize, method=quantization)
    self.paths = paths
    self.partial = [p.with_name(f".{p.name}.partial") for p in paths]
    self.files = []
    for p in self.partial:
      self.files.append(self._guard(p, lambda: sf.SoundFile(str(p), "w", samplerate=SAMPLE_RATE, channels=1,
                                                            subtype="PCM_16", format="WAV")))

  def _guard(self, path: Path, write):
    try:
      return write()
    except (sf.SoundFileError, OSError) as e:
      self.discard()
      full = shutil.disk_usage(path.parent).free < (1 << 20)
      why = "no space left on the device" if full else f"{type(e).__name__}: {e}"
      raise SamplingError(f"{path.parent}: cannot write {path.name.removeprefix('.').removesuffix('.partial')} "
                          f"({why}); no partial file was left. Free some space or choose another --out") from None

  def write(self, tokens: np.ndarray):
    for f, p, row in zip(self.files, self.partial, tokens):
      self._guard(p, lambda: f.write(np.clip(self.dequantize(row), -1.0, 1.0)))

  def close(self):
    for f, p, final in zip(self.files, self.partial, self.paths):
      self._guard(p, f.close)
      p.replace(final)

  def discard(self):
    for f in self.files:
      with contextlib.suppress(Exception):
        f.close()
    for p in self.partial:
      p.unlink(missing_ok=True)


def write_wavs(tokens: np.ndarray, out_dir: str | Path, quantization: str) -> list[Path]:
  """Each row of int tokens [N, T] decoded to out_dir/sample_{row:05d}.wav (16 kHz, 16-bit), as `generate` writes
  its streams."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = [out_dir / f"sample_{i:05d}.wav" for i in range(len(tokens))]
  sink = _WavSink(paths, quantization)
  try:
    sink.write(np.asarray(tokens))
  finally:
    sink.close()
  return paths


def generate(model_or_checkpoint: HarmonicRNN | str | Path, n_samples: int, n_tokens: int,
             prompt: np.ndarray | None = None, temperature: float = 1.0, seed: int = 0,
             out_dir: str | Path | None = None, quantization: str | None = None, *, batch_size: int = SAMPLE_BATCH,
             progress: bool = True) -> np.ndarray | list[Path]:
  """Samples `n_samples` sequences of `n_tokens` new tokens (after the prompt, if any).

  Args:
    model_or_checkpoint: a HarmonicRNN, or a training work directory (`hrnn.train.checkpoint.load_model`, EMA weights).
    n_samples: number of independent streams, generated `batch_size` at a time.
    n_tokens: tokens to generate per stream (any count; 16,000 per second of audio).
    prompt: int tokens [P] (shared) or [n_samples, P] to continue; None starts from silence.
    temperature: > 0; the logits are divided by it.
    seed: stream i draws the token at position t with fold_in(fold_in(key(seed), i), t): a stream's samples do not
      depend on the batch size or on chunking.
    out_dir: when given, stream s is written to out_dir/sample_{s:05d}.wav (16 kHz, 16-bit, prompt included) chunk
      by chunk, so memory does not grow with the length.
    quantization: "mu-law" or "linear" decoding for the WAVs; None = the checkpoint's dataset (mu-law for a model).
    batch_size: streams per compiled call (the last batch is padded with repeats and trimmed).
    progress: show a tqdm bar of generated tokens per second (all streams together).

  Returns:
    The WAV paths when out_dir is given, else int32 tokens [n_samples, P + n_tokens] (prompt included).
  """
  model, quantization = resolve(model_or_checkpoint, quantization)
  if n_samples < 1 or n_tokens < 1 or batch_size < 1:
    raise SamplingError(f"n_samples={n_samples}, n_tokens={n_tokens} and batch_size={batch_size} must be >= 1")
  if not temperature > 0:
    raise SamplingError(f"temperature must be > 0, got {temperature}")
  prompt = _prompt_rows(prompt, n_samples, model.cfg.num_classes)
  prompt_length = 0 if prompt is None else prompt.shape[1]
  step_model = StepModel.from_model(model)
  batch = min(batch_size, n_samples)
  root = jax.random.key(seed)
  paths, results = [], []
  if out_dir is not None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
  with tqdm(total=n_samples * n_tokens, unit="tok", unit_scale=True, desc="sampling", disable=not progress) as bar:
    for first in range(0, n_samples, batch):
      real = min(batch, n_samples - first)
      rows = np.minimum(np.arange(first, first + batch), n_samples - 1)
      keys = jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.asarray(rows))
      state, token, forced, head = start(model, step_model, None if prompt is None else prompt[rows], batch)
      if out_dir is None:
        sink, collected = None, [head[:real]]
      else:
        batch_paths = [out_dir / f"sample_{first + i:05d}.wav" for i in range(real)]
        sink, collected = _WavSink(batch_paths, quantization), None
        sink.write(head[:real])
        paths += batch_paths
      pos = head.shape[1]
      try:
        for chunk in sample_stream(step_model, state, token, prompt_length - pos + n_tokens, keys=keys,
                                   temperature=temperature, forced=forced):
          if sink is None:
            collected.append(chunk[:real])
          else:
            sink.write(chunk[:real])
          new = min(pos + chunk.shape[1], prompt_length + n_tokens) - max(pos, prompt_length)
          bar.update(real * max(new, 0))
          pos += chunk.shape[1]
      except BaseException:
        if sink is not None:
          sink.discard()
        raise
      if sink is not None:
        sink.close()
      if collected is not None:
        results.append(np.concatenate(collected, axis=1))
  return paths if out_dir is not None else np.concatenate(results, axis=0)
