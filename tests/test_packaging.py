"""Packaging: lower bounds in pyproject.toml with exact pins in requirements.lock, the extras users install, and
the one repository-URL setting that the README's Colab / Kaggle links and the notebooks' install cell follow."""

import json
import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
URL = PROJECT["urls"]["Repository"]


def name(requirement: str) -> str:
  return re.split(r"[\[<>=!~ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def locked() -> dict[str, str]:
  lines = (REPO / "requirements.lock").read_text().splitlines()
  return dict((name(line), line.split("==")[1]) for line in lines if "==" in line)


def test_lower_bounds_only_and_every_dependency_pinned():
  assert PROJECT["requires-python"] == ">=3.11"
  extras = PROJECT["optional-dependencies"]
  assert set(extras) == {"tpu", "cuda", "metrics", "notebooks", "test"}
  assert {name(r) for r in extras["metrics"]} == {"torch", "torchvision", "torch-fidelity"}
  assert {name(r) for r in extras["notebooks"]} == {"jupyterlab", "papermill", "ipykernel"}
  assert extras["tpu"][0].startswith("jax[tpu]") and extras["cuda"][0].startswith("jax[cuda")
  pins = locked()
  for requirement in PROJECT["dependencies"] + sum(extras.values(), []):
    assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+>=[0-9.]+", requirement), f"{requirement}: a lower bound only"
    if name(requirement) != "jax" or "[" not in requirement:  # the accelerator runtimes are not locked (CPU here)
      assert name(requirement) in pins, f"{requirement} has no exact pin in requirements.lock"
      bound = tuple(map(int, requirement.split(">=")[1].split(".")))
      pinned = tuple(int(re.match(r"\d+", part).group()) for part in pins[name(requirement)].split(".")[:len(bound)])
      assert pinned >= bound, f"requirements.lock pins {name(requirement)} below its lower bound"


def test_notebook_links_and_install_source_follow_the_repository():
  readme = (REPO / "README.md").read_text()
  path = URL.removeprefix("https://github.com/")
  for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
    colab = f"(https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook.name})"
    kaggle = f"(https://kaggle.com/kernels/welcome?src={URL}/blob/main/notebooks/{notebook.name})"
    assert f"[Open in Colab]{colab}" in readme and f"[Open in Kaggle]{kaggle}" in readme, notebook.name
    cells = json.loads(notebook.read_text())["cells"]
    install = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    assert f'os.environ.get("HRNN_SOURCE", "git+{URL}")' in install, notebook.name
  # no link to another repository
  assert not {m for m in re.findall(r"colab\.research\.google\.com/github/([^/]+/[^/]+)/", readme) if m != path}


def install_cell() -> str:
  cells = json.loads((REPO / "notebooks" / "00_quickstart.ipynb").read_text())["cells"]
  return "".join(next(c for c in cells if c["cell_type"] == "code")["source"])


class FakeRun:
  """subprocess.run stand-in: the jax probe prints `probe`; pip installs succeed unless their command line holds
  any of `failing`."""

  def __init__(self, probe: str, failing: tuple[str, ...] = ()):
    self.probe, self.failing, self.pip = probe, failing, []

  def __call__(self, command, **kwargs):
    import subprocess

    if isinstance(command, list) and command[1:3] == ["-m", "pip"]:
      self.pip.append(command[5:])  # after: python -m pip install -q
      return subprocess.CompletedProcess(command, int(any(f in " ".join(command) for f in self.failing)))
    return subprocess.CompletedProcess(command, 0, stdout=self.probe)


def run_install_cell(monkeypatch, fake: FakeRun, *, installed=False, tpu=False, source=None):
  import importlib.util
  import os
  import shutil
  import subprocess

  monkeypatch.setattr(subprocess, "run", fake)
  monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if installed else None)
  monkeypatch.setattr(shutil, "which", lambda tool: "/usr/bin/" + tool if tool in ("apt-get", "espeak-ng") else None)
  exists = os.path.exists
  monkeypatch.setattr(os.path, "exists", lambda p: tpu if p == "/dev/accel0" else exists(p))
  monkeypatch.delenv("COLAB_TPU_ADDR", raising=False)
  if source:
    monkeypatch.setenv("HRNN_SOURCE", source)
  exec(install_cell(), {})
  return fake.pip


def test_install_cell_keeps_an_accelerator_jax(monkeypatch, tmp_path):
  # Installed already: nothing runs (idempotent).
  assert run_install_cell(monkeypatch, FakeRun("0.10.2 tpu"), installed=True) == []
  # A TPU runtime whose jax runs on it: hrnn against exactly that jax, no "tpu" extra.
  pip = run_install_cell(monkeypatch, FakeRun("0.10.2 tpu"), tpu=True)
  assert pip == [["-c", "/tmp/hrnn-keep-jax.txt", f"hrnn[metrics,notebooks] @ git+{URL}"]]
  # That jax is too old for hrnn (pip refuses the constraint): the "tpu" extra installs one.
  pip = run_install_cell(monkeypatch, FakeRun("0.4.30 tpu", failing=("-c",)), tpu=True)
  assert pip[1] == [f"hrnn[metrics,notebooks,tpu] @ git+{URL}"]
  # A TPU runtime with a CPU-only jax, and a wheel as the source (a local path becomes a file URL).
  wheel = tmp_path / "hrnn-0.1.0-py3-none-any.whl"
  pip = run_install_cell(monkeypatch, FakeRun("0.10.2 cpu"), tpu=True, source=str(wheel))
  assert pip == [[f"hrnn[metrics,notebooks,tpu] @ {wheel.as_uri()}"]]
