"""`hrnn sample`: generate audio step by step from a trained run or a randomly initialised preset."""

from __future__ import annotations

from hrnn.cli import positive_float, positive_int
from hrnn.config import PRESETS, SAMPLE_BATCH, get_preset

HELP = "Generate audio: sample 16 kHz WAV files step by step from a trained run (EMA weights) or a preset."


def add_arguments(parser):
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--checkpoint", metavar="DIR", help="run directory written by `hrnn train` (EMA weights)")
  source.add_argument("--preset", help=f"a randomly initialised model (for benchmarking), one of: {', '.join(PRESETS)}")
  parser.add_argument("--n", type=positive_int, default=8, help="number of samples")
  parser.add_argument("--seconds", type=positive_float, default=4.0,
                      help="seconds of audio to generate per sample (16 kHz)")
  parser.add_argument("--out", default="samples", help="output folder for sample_NNNNN.wav")
  parser.add_argument("--temperature", type=positive_float, default=1.0, help="softmax temperature (> 0)")
  parser.add_argument("--seed", type=int, default=0, help="sampling seed (and the init seed with --preset)")
  parser.add_argument("--prompt", metavar="WAV", help="continue this audio file (its first --prompt-seconds)")
  parser.add_argument("--prompt-seconds", type=positive_float, default=1.0, help="seconds of --prompt to continue")
  parser.add_argument("--batch-size", type=positive_int, default=SAMPLE_BATCH, help="samples generated together")
  parser.add_argument("--quantization", choices=("mu-law", "linear"),
                      help="token encoding of the WAVs; unset: the checkpoint's dataset's (mu-law with --preset)")


def run(args):
  # The one place this module imports JAX (the model): `hrnn --help` imports it for its flags and stays fast.
  from flax import nnx

  from hrnn.model import sampling
  from hrnn.model.harmonic_rnn import HarmonicRNN

  if args.checkpoint:
    source = args.checkpoint
    quantization = args.quantization
  else:
    source = HarmonicRNN(get_preset(args.preset), rngs=nnx.Rngs(args.seed))
    quantization = args.quantization or "mu-law"
  n_tokens = round(args.seconds * sampling.SAMPLE_RATE)
  if n_tokens < 1:
    raise sampling.SamplingError(f"--seconds {args.seconds} gives no samples at {sampling.SAMPLE_RATE} Hz")
  prompt = None
  if args.prompt:
    model, quantization = sampling.resolve(source, quantization)
    source = model
    prompt = sampling.prompt_tokens(args.prompt, args.prompt_seconds, quantization)
  paths = sampling.generate(source, args.n, n_tokens, prompt=prompt, temperature=args.temperature,
                            seed=args.seed, out_dir=args.out, quantization=quantization,
                            batch_size=args.batch_size)
  prompt_note = "" if prompt is None else f" after a {len(prompt) / sampling.SAMPLE_RATE:.2f} s prompt"
  print(f"wrote {len(paths)} samples of {n_tokens / sampling.SAMPLE_RATE:.2f} s{prompt_note} to {args.out}")
