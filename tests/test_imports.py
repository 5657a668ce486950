"""The import graph of hrnn has no cycle, and the command line builds its parser without importing JAX."""

import ast
import subprocess
import sys
from pathlib import Path

import hrnn

ROOT = Path(hrnn.__file__).parent


def modules() -> dict[str, Path]:
  """Every module of the hrnn package by dotted name (a package by its own name, for its __init__.py)."""
  found = {}
  for path in ROOT.rglob("*.py"):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return found


def imported(module: str, path: Path, known: set[str]) -> set[str]:
  """The hrnn modules that importing `module` (at module level or inside any function) imports.

  `from a.b import c` imports a.b.c when that is a module, else a.b; importing a.b also runs the package a (its
  __init__.py), except when the importer lives inside a: Python has started that package already."""
  package = module if path.name == "__init__.py" else module.rpartition(".")[0]
  targets = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      targets.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative: from the importer's package upwards
        base = ".".join(filter(None, [package.rsplit(".", node.level - 1)[0], base]))
      targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
  edges = set()
  for target in targets:
    parts = target.split(".")
    for i in range(2, len(parts) + 1):  # the package itself (hrnn/__init__.py) is left out: it imports nothing
      name = ".".join(parts[:i])
      if name in known and name != module and not module.startswith(name + "."):
        edges.add(name)
  return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle of the directed graph as [a, b, ..., a], or None."""
  state = {}  # module -> "open" while on the DFS stack, "done" after
  stack = []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return stack[stack.index(nxt):] + [nxt]
      if nxt not in state and (cycle := visit(nxt)):
        return cycle
    stack.pop()
    state[node] = "done"
    return None

  for node in sorted(graph):
    if node not in state and (cycle := visit(node)):
      return cycle
  return None


def test_find_cycle_finds_one_and_only_one():
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
  assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]


def test_import_graph_reads_every_kind_of_import(tmp_path):
  known = {"hrnn.x", "hrnn.pkg", "hrnn.pkg.sub", "hrnn.pkg.other", "hrnn.y"}
  source = tmp_path / "sub.py"
  source.write_text("import hrnn.x\nfrom hrnn.pkg import other, CONSTANT\n\ndef f():\n  from hrnn import y\n")
  # other is a module of pkg (edge to it), CONSTANT is not (edge to pkg: already started, as sub lives in it).
  assert imported("hrnn.pkg.sub", source, known) == {"hrnn.x", "hrnn.pkg.other", "hrnn.y"}
  assert imported("hrnn.z", source, known | {"hrnn.z"}) == {"hrnn.x", "hrnn.pkg", "hrnn.pkg.other", "hrnn.y"}


def test_no_import_cycle_in_hrnn():
  known = modules()
  assert {"hrnn.config", "hrnn.model.harmonic_rnn", "hrnn.cli.train", "hrnn.data.specs"} <= set(known)
  graph = {name: imported(name, path, set(known)) for name, path in known.items()}
  assert "hrnn.data.specs" in graph["hrnn.config"] and "hrnn.data" in graph["hrnn.config"]
  cycle = find_cycle(graph)
  assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_cli_parser_does_not_import_jax():
  # `hrnn --help` (every subcommand's flags) must stay fast: JAX, torch and the datasets library load only when a
  # command runs.
  code = ("import sys; from hrnn.cli import build_parser; build_parser(); "
          "print(sorted(m for m in ('jax', 'torch', 'datasets', 'flax') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
  assert out.strip() == "[]"
