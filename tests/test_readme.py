"""Every shell command and Python snippet of README.md, run at the smallest scale that exercises it.

The harness is data-driven: `readme_snippets()` extracts each line of a ```bash block and each ```python block,
and RULES (below) says for each one which group runs it and which sizes are scaled down. The substitutions are
the reviewed list of everything that differs from the README's text: a paper or CPU size becomes the smoke size,
a dataset size becomes `tiny`, a download becomes an archive built here and placed where the README says an
offline user puts it, `make reproduce` / `make test` are dry-run (`make -n`: the suite would recurse). Python
snippets get a prelude defining the names the README leaves to the reader (`audio`, `model`, `tokens`, ...).

A README command no rule matches, a rule that matches nothing, and a substitution that no longer applies all fail
`test_every_readme_command_has_a_rule`, naming the command: a new README command needs a rule here, which runs it.

Commands run in-process (`hrnn.cli.main`, `exec` for Python) in a work folder with HOME, HRNN_DATA and the
working directory pointing into a temporary folder, so `~/recordings`, `runs/...` and `samples/` are the README's
own paths. Each group is self-contained (pytest-xdist may run groups on different workers).
"""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


@dataclasses.dataclass(frozen=True)
class Snippet:
  """One README command (a line of a bash block) or Python snippet (a whole python block)."""

  kind: str  # "bash" or "python"
  text: str  # the command without its comment, or the block
  line: int  # 1-based line in README.md

  def __str__(self):
    return f"README.md:{self.line} `{self.text.splitlines()[0]}`"


def readme_snippets(text: str | None = None) -> list[Snippet]:
  """Every bash command (comments removed, one per line; a trailing backslash continues it) and python block."""
  text = README.read_text() if text is None else text
  snippets = []
  for block in re.finditer(r"^```(bash|python)[ \t]*\n(.*?)^```", text, re.S | re.M):
    first = text[:block.start()].count("\n") + 2
    if block.group(1) == "python":
      snippets.append(Snippet("python", block.group(2), first))
      continue
    pending, start = "", first
    for i, line in enumerate(block.group(2).splitlines()):
      if not pending:
        start = first + i
      pending += line
      if pending.endswith("\\"):
        pending = pending[:-1] + " "
        continue
      words = shlex.split(pending, comments=True)
      if words:
        snippets.append(Snippet("bash", " ".join(words), start))
      pending = ""
  return snippets


@dataclasses.dataclass(frozen=True)
class Rule:
  """How one README command is run.

  Attributes:
    pattern: regex matched (re.fullmatch) against the command, or (re.match) against a Python block.
    group: the test group that runs it (commands of a group run in README order, sharing one work folder).
    subs: (regex, replacement) applied in order; each must change the command (a stale one fails).
    prelude: Python run before a snippet: the names the README leaves to the reader.
    slow: run only by the group's slow test (the fast one runs the rest of the group, so each group has one).
  """

  pattern: str
  group: str
  subs: tuple[tuple[str, str], ...] = ()
  prelude: str = ""
  slow: bool = False

  def matches(self, snippet: Snippet) -> bool:
    if snippet.kind == "bash":
      return re.fullmatch(self.pattern, snippet.text) is not None
    return re.match(self.pattern, snippet.text) is not None

  def apply(self, text: str) -> str:
    for old, new in self.subs:
      changed = re.sub(old, new, text, count=1)
      if changed == text:
        raise AssertionError(f"substitution {old!r} -> {new!r} no longer applies to `{text.splitlines()[0]}`: "
                             "update RULES in tests/test_readme.py")
      text = changed
    return text


SMOKE = (r"--preset (paper|cpu)\b", "--preset smoke")
TINY = (r"--size (small|full)\b", "--size tiny")

# Preludes of Python snippets: what the README leaves to the reader, at the smallest sizes.
AUDIO = "import numpy as np\naudio = np.sin(np.arange(1600, dtype=np.float32) / 7)\n"
SCAN_INPUTS = """\
import jax.numpy as jnp
import numpy as np
rng = np.random.default_rng(0)
a = jnp.asarray(rng.uniform(0.5, 0.99, (2, 160, 8)) * np.exp(1j * rng.uniform(0, 1, (2, 160, 8))), jnp.complex64)
b = jnp.asarray(rng.normal(size=(2, 160, 8)) + 1j * rng.normal(size=(2, 160, 8)), jnp.complex64)
h0 = jnp.zeros((2, 8), jnp.complex64)
"""
SMOKE_MODEL = """\
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hrnn.config import get_preset
from hrnn.model.harmonic_rnn import HarmonicRNN
cfg = get_preset("smoke")
model = HarmonicRNN(cfg, rngs=nnx.Rngs(0))
tokens = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 320)), jnp.int32)
mask = jnp.ones((2, 320), jnp.float32)
state = nnx.state(model)
"""
SAMPLING_INPUTS = SMOKE_MODEL + """\
prompt_tokens = tokens[0, :200]
batch = 2
token = tokens[:, 0]
"""
SCORES = """\
import numpy as np
rng = np.random.default_rng(0)
f1, f2 = rng.normal(size=(40, 8)), rng.normal(size=(30, 8))
p = rng.dirichlet(np.ones(10), 40)
p_train = rng.dirichlet(np.ones(10), 40)
"""

RULES: tuple[Rule, ...] = (
    # make: dry runs (the suite itself is `make test`; tests/test_reproduce.py runs the whole smoke reproduction).
    Rule(r"make (reproduce|test)", "make"),
    Rule(r"hrnn info .*", "info"),
    Rule(r"hrnn( [a-z_-]+)* --help", "info"),
    Rule(r"from hrnn\.config import get_scale, train_config\n", "info"),
    # Data: embedded sets at the tiny size; sc09 offline from an archive built here at ROOT/sc09/sc09.zip.
    Rule(r"hrnn data prepare (sc09-espeak --size small|beethoven-piano --size full)", "data", (TINY,)),
    Rule(r"hrnn data prepare sc09", "data"),
    Rule(r"hrnn data info sc09-espeak .*", "data"),
    Rule(r"hrnn data info sc09 --data-dir /data/sc09 .*", "data", ((r"/data/sc09", "sc09-copy"),)),
    Rule(r"from hrnn import data\n\ndata\.prepare\(", "data", ((r'size="small"', 'size="tiny"'),), AUDIO),
    # Your own audio: ~/recordings is a generated folder tree (HOME is the test's); smoke training, short samples.
    Rule(r"hrnn data prepare folder --source ~/recordings --name mine .*", "own",
         ((r"--clip-seconds \d+", "--clip-seconds 0.25"),)),
    Rule(r"hrnn train --preset cpu --dataset mine .*", "own", (SMOKE, (r"--steps \d+", "--steps 1"))),
    Rule(r"hrnn sample --checkpoint runs/mine .*", "own", ((r"--n \d+", "--n 2"), (r"--seconds \d+", "--seconds 0.01"))),
    Rule(r"from hrnn import data\n\ndata\.prepare_folder\(", "own", ((r"clip_seconds=\d+", "clip_seconds=0.25"),)),
    # Metrics: tiny classifier, 12 noise WAVs as samples/, SaShiMi-style pickle of a tiny classifier.
    Rule(r"hrnn data prepare sc09-espeak --size full", "metrics", (TINY,)),
    Rule(r"hrnn metrics train-classifier .*", "metrics", ((r"$", " --size tiny --epochs 1"),)),
    Rule(r"hrnn metrics score .*", "metrics"),
    Rule(r"hrnn bench classifier .*", "metrics", ((r"$", " --size tiny --data-size tiny --epochs 1"),)),
    Rule(r"from hrnn import metrics\n", "metrics", ((r'"cpu"\)', '"tiny")'),), SCORES),
    # Kernels and benchmarks: short lengths, the smoke model.
    Rule(r"from hrnn\.ops\.scan import .*", "kernels", (), SCAN_INPUTS),
    Rule(r"hrnn bench scan --json", "kernels", ((r"$", " --min-log2 8 --max-log2 9 --batch 1 --channels 8 --repeats 1"),),
         slow=True),
    Rule(r"hrnn bench scan --max-log2 .*", "kernels",
         ((r"--max-log2 \d+", "--max-log2 9"), (r"$", " --min-log2 8 --batch 1 --channels 8 --repeats 1")), slow=True),
    Rule(r"from hrnn\.train import sharding\n", "kernels", ((r"data=2, seq=4", "data=2, seq=2"),), SMOKE_MODEL, slow=True),
    Rule(r"cfg = dataclasses\.replace\(get_preset\(\"paper\"\).*", "kernels", (),
         "import dataclasses\nfrom hrnn.config import get_preset\n"),
    Rule(r"hrnn bench long_context --json", "bench", ((r"$", " --preset smoke --tokens 3200 --seq 2"),)),
    Rule(r"hrnn bench long_context --tokens .*", "bench",
         ((r"--tokens \d+", "--tokens 3200"), (r"$", " --preset smoke --seq 2"))),
    Rule(r"hrnn bench train --preset paper --batch .*", "bench",
         (SMOKE, (r"--seq-len \d+", "--seq-len 320"), (r"--batch \d+", "--batch 2"))),
    Rule(r"hrnn bench train --preset paper one-pool no-pool .*", "bench",
         ((r"--preset paper one-pool no-pool", "--preset smoke cpu"), (r"$", " --seq-len 320 --steps 1"))),
    Rule(r"hrnn bench sample .*", "bench",
         ((r"--preset (paper|no-pool)", "--preset smoke"), (r"--batch \d+", "--batch 2"),
          (r"$", " --tokens 160 --repeats 1 --naive-tokens 16"))),
    # Training: smoke model, a few steps, fake sc09 (placed offline) for the paper-dataset commands.
    Rule(r"hrnn train --preset cpu --dataset sc09-espeak .*", "train", (SMOKE, (r"--steps \d+", "--steps 2")), slow=True),
    Rule(r"hrnn train --preset paper --dataset sc09 .*", "train", (SMOKE, (r"--epochs \d+", "--epochs 1 --batch-size 32"))),
    Rule(r"hrnn train --workdir runs/sc09 --epochs \d+", "train", ((r"--epochs \d+", "--epochs 2"),), slow=True),
    Rule(r"hrnn eval .*", "train"),
    Rule(r"hrnn sample --checkpoint runs/sc09 .*", "train", ((r"--n \d+", "--n 2"), (r"--seconds \d+", "--seconds 0.01"))),
    Rule(r"hrnn sample --checkpoint runs/ymix .*", "train",
         ((r"runs/ymix", "runs/sc09"), (r"--seconds \d+", "--seconds 0.02"), (r"--prompt-seconds \d+", "--prompt-seconds 0.01")),
         slow=True),
    Rule(r"hrnn sample --preset paper .*", "train", (SMOKE, (r"--n \d+", "--n 2"), (r"--seconds \d+", "--seconds 0.01")),
         slow=True),
    Rule(r"from hrnn import data\nfrom hrnn\.config import train_config", "train",
         ((r'train_config\("cpu", "sc09-espeak", steps=\d+', 'train_config("smoke", "sc09-espeak", steps=2'),
          (r"seq_len=16_000", "seq_len=1600")), slow=True),
    Rule(r"from hrnn\.model import sampling\n", "train",
         ((r"16_000", "320"), (r"8_000", "160")), SAMPLING_INPUTS, slow=True),
    Rule(r"from hrnn\.paper import experiments\n", "experiments",
         ((r'get_scale\("cpu", steps=\d+\)', 'get_scale("smoke", steps=2)'),)),
    # Reproduction into one OUT folder at the smoke preset (the paper's real datasets and accelerators: smoke too).
    Rule(r"hrnn reproduce --preset smoke --out /tmp/smoke", "reproduce", ((r"/tmp/smoke", "out"),)),
    Rule(r"hrnn reproduce --preset (cpu|paper).*", "reproduce", (SMOKE, (r"$", " --out out"))),
)


def group_snippets(group: str) -> list[tuple[Snippet, Rule]]:
  """The README commands of a group with their rule, in README order. Commands without exactly one rule are
  test_every_readme_command_has_a_rule's failure, not the group's."""
  ruled = [(s, [r for r in RULES if r.matches(s)]) for s in readme_snippets()]
  chosen = [(s, rules[0]) for s, rules in ruled if len(rules) == 1 and rules[0].group == group]
  assert chosen, f"no README command in group {group!r}"
  return chosen


def test_extraction_by_hand():
  text = ("intro\n```bash\nhrnn info --preset paper   # a comment\n\nhrnn a \\\n  --b 1\n```\n"
          "```python\nx = 1\n```\n```text\nnot run\n```\n")
  assert readme_snippets(text) == [Snippet("bash", "hrnn info --preset paper", 3),
                                   Snippet("bash", "hrnn a --b 1", 5), Snippet("python", "x = 1\n", 9)]


def test_every_readme_command_has_a_rule():
  snippets = readme_snippets()
  assert len(snippets) > 30
  problems = []
  for snippet in snippets:
    matching = [r for r in RULES if r.matches(snippet)]
    if len(matching) != 1:
      problems.append(f"{snippet}: {len(matching)} rules in tests/test_readme.py RULES match (need exactly one)")
      continue
    try:
      matching[0].apply(snippet.text)
    except AssertionError as e:
      problems.append(f"{snippet}: {e}")
  unused = [r.pattern for r in RULES if not any(r.matches(s) for s in snippets)]
  problems += [f"rule {p!r} matches no README command: remove it" for p in unused]
  assert not problems, "\n".join(problems)
  assert {r.group for r in RULES} == set(GROUPS), "every group has a test below"


# ------------------------------------------------------------------------------------------------------------------
# Running a group


@pytest.fixture
def work(tmp_path, monkeypatch):
  """A work folder as a user's: HOME and the working directory inside it, the data root ~/data."""
  real_cache = Path(os.environ.get("HRNN_CACHE", Path.home() / ".cache" / "hrnn"))
  home = tmp_path / "home"
  home.mkdir()
  monkeypatch.setenv("HOME", str(home))
  monkeypatch.setenv("HRNN_DATA", str(home / "data"))
  monkeypatch.setenv("HRNN_CACHE", str(real_cache))  # the native kernels, built once per machine
  monkeypatch.chdir(home)
  return home


def run_hrnn(command: str) -> None:
  """`hrnn ...` in-process; JAX's global cache settings that `hrnn train` changes are restored."""
  import jax

  from hrnn.cli import main

  saved = jax.config.jax_compilation_cache_dir
  try:
    status = main([os.path.expanduser(word) for word in shlex.split(command)[1:]])
  except SystemExit as e:  # --help
    status = e.code
  finally:
    jax.config.update("jax_compilation_cache_dir", saved)
  assert status in (0, None), f"`{command}` exited with {status}"


def run_make(command: str) -> None:
  """`make TARGET` as a dry run: the recipe it would run (make test would run this very suite)."""
  target = command.split()[1]
  out = subprocess.run(["make", "-n", "-W", "requirements.lock", target], cwd=REPO, capture_output=True, text=True,
                       check=True).stdout
  expected = {"reproduce": "hrnn reproduce --preset cpu --out results/cpu", "test": "-m pytest"}[target]
  assert expected in out, f"`make -n {target}` does not run `{expected}`:\n{out}"


def run_snippet(snippet: Snippet, rule: Rule) -> dict:
  namespace: dict = {"__name__": "readme"}
  code = rule.prelude + rule.apply(snippet.text)
  exec(compile(code, f"README.md:{snippet.line}", "exec"), namespace)
  return namespace


def run_group(group: str, before=None, slow: bool = True) -> None:
  """Runs the group's README commands in README order (without its slow ones unless `slow`); `before(snippet)`
  prepares what a command needs."""
  for snippet, rule in group_snippets(group):
    if rule.slow and not slow:
      continue
    if before is not None:
      before(snippet)
    if snippet.kind == "python":
      run_snippet(snippet, rule)
      continue
    command = rule.apply(snippet.text)
    try:
      {"make": run_make, "hrnn": run_hrnn}[command.split()[0]](command)
    except KeyError:
      raise AssertionError(f"{snippet}: no runner for `{command.split()[0]}` in tests/test_readme.py") from None


def fake_sc09_archive(home: Path) -> None:
  """The offline way the README gives for sc09: its zip placed at ROOT/sc09/sc09.zip (a tiny fake here)."""
  from data_fakes import fake_sc09, zip_folder

  (home / "data" / "sc09").mkdir(parents=True, exist_ok=True)
  zip_folder(fake_sc09(home / "sc09-src"), home / "data" / "sc09" / "sc09.zip", "sc09")
  fake_sc09(home / "sc09-copy")


def own_recordings(home: Path) -> None:
  """~/recordings: 4 files, 2 folders, stereo 44.1 kHz WAV, FLAC at 22.05 kHz, OGG at 48 kHz, a note."""
  import soundfile as sf

  rng = np.random.default_rng(0)
  top = home / "recordings"
  (top / "live").mkdir(parents=True)
  sf.write(top / "a.wav", rng.uniform(-0.5, 0.5, (22050, 2)), 44100)
  sf.write(top / "b.flac", rng.uniform(-0.5, 0.5, 11025), 22050)
  sf.write(top / "live" / "c.ogg", rng.uniform(-0.5, 0.5, 24000), 48000)
  sf.write(top / "live" / "d.wav", rng.uniform(-0.5, 0.5, 8000), 16000)
  (top / "notes.txt").write_text("not audio")


def noise_samples(folder: Path, n: int = 12) -> None:
  """What `hrnn sample --out samples/` writes, for the scoring commands: n 1-second 16 kHz WAVs."""
  from hrnn.data import write_wav

  for i in range(n):
    write_wav(folder / f"sample_{i:05d}.wav", np.random.default_rng(i).uniform(-0.3, 0.3, 16000))


def test_make(work):
  run_group("make")


def test_info(work, capsys):
  run_group("info")
  assert "7,272,704" in capsys.readouterr().out  # the paper preset's parameter count, as the README says


def test_data(work):
  fake_sc09_archive(work)
  run_group("data")
  assert (work / "sc09.png").is_file()
  assert (work / "data" / "sc09" / "hrnn_dataset.json").is_file()


def test_own_audio(work):
  own_recordings(work)
  run_group("own")
  assert sorted(p.name for p in (work / "samples" / "mine").iterdir()) == ["sample_00000.wav", "sample_00001.wav"]


@pytest.mark.slow
def test_metrics(work, monkeypatch):
  from test_metrics_classifier import _sashimi_style_pickle

  from hrnn.metrics import classifier as C

  fake_sc09_archive(work)

  def before(snippet):
    if "--classifier resnext.pth" in snippet.text:
      run_hrnn("hrnn data prepare sc09")
      _sashimi_style_pickle(work / "resnext.pth", monkeypatch, C.ResNeXt(C.classifier_config("tiny")))
      (work / "ll.json").write_text(str([float(-i) for i in range(40)]))
    if "samples/" in snippet.text and not (work / "samples").is_dir():
      noise_samples(work / "samples", 40)  # SaShiMi's likelihood selection keeps 11 of 40 (>= 10 to score)

  run_group("metrics", before)


def test_kernels(work):
  run_group("kernels", slow=False)


@pytest.mark.slow
def test_kernels_all(work):
  run_group("kernels")


@pytest.mark.slow
def test_bench(work):
  run_group("bench")


def prepare_for_training(work: Path) -> None:
  """The datasets the Data section's commands prepare (at the tiny size), and a prompt clip."""
  from data_fakes import noise

  from hrnn.data import write_wav

  fake_sc09_archive(work)
  run_hrnn("hrnn data prepare sc09-espeak --size tiny")
  run_hrnn("hrnn data prepare sc09")
  write_wav(work / "clip.wav", noise(1600, 0))


def test_train(work):
  """Train on sc09 (placed offline), evaluate, sample from the checkpoint."""
  prepare_for_training(work)
  run_group("train", slow=False)
  assert (work / "runs" / "sc09" / "metrics.jsonl").is_file()
  assert len(list(work.glob("samples/*.wav"))) == 2


@pytest.mark.slow
def test_train_all(work):
  """Every training, evaluation and sampling command and snippet, extending a run, a prompt."""
  prepare_for_training(work)
  run_group("train")
  assert (work / "runs" / "cpu-sc09" / "metrics.jsonl").is_file()


@pytest.mark.slow
def test_experiments(work):
  run_group("experiments")


def test_every_hrnn_command_parses_as_written_and_as_run():
  """Fast, for every group (the slow ones included): each `hrnn` line, as the README writes it and as the harness
  runs it, is accepted by the real parser (a flag renamed or removed fails here at once)."""
  from hrnn.cli import build_parser

  parser = build_parser()
  checked = 0
  for group in GROUPS:
    for snippet, rule in group_snippets(group):
      if snippet.kind != "bash" or not snippet.text.startswith("hrnn ") or snippet.text.endswith("--help"):
        continue
      for command in (snippet.text, rule.apply(snippet.text)):
        try:
          args = parser.parse_args([os.path.expanduser(w) for w in shlex.split(command)[1:]])
        except SystemExit:
          raise AssertionError(f"{snippet}: `{command}` is not accepted by `hrnn`") from None
        assert args.command == command.split()[1]
      checked += 1
  assert checked > 25


@pytest.mark.slow
def test_reproduce(work):
  """The smoke reproduction, then the README's re-runs of some notebooks and of the README alone, into one OUT."""
  run_group("reproduce")
  assert (work / "out" / "README.md").is_file() and (work / "out" / "run_status.json").is_file()


GROUPS = ("make", "info", "data", "own", "metrics", "kernels", "bench", "train", "experiments", "reproduce")
