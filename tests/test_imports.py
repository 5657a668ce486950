"""The import graph of hrnn: no cycle, layers that import only downwards, a command line that builds its parser
without importing JAX, and every module path or dotted name the documentation mentions exists."""

import ast
import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hrnn

ROOT = Path(hrnn.__file__).parent
REPO = ROOT.parent


def modules() -> dict[str, Path]:
  """Every module of the hrnn package by dotted name (a package by its own name, for its __init__.py)."""
  found = {}
  for path in ROOT.rglob("*.py"):
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
  return found


@functools.cache
def parsed(path: Path) -> ast.Module:
  return ast.parse(path.read_text(), str(path))


def import_statements(tree: ast.AST, functions: bool = True):
  """The import statements of `tree`; with functions=False only those that run when the module is imported (none
  inside a function body)."""
  stack = [tree]
  while stack:
    node = stack.pop()
    if isinstance(node, (ast.Import, ast.ImportFrom)):
      yield node
    stack += [child for child in ast.iter_child_nodes(node)
              if functions or not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]


def imported(module: str, path: Path, known: set[str], functions: bool = True) -> set[str]:
  """The hrnn modules that importing `module` imports: at module level, and (functions=True) inside any function.

  `from a.b import c` imports a.b.c when that is a module, else a.b; importing a.b also runs the package a (its
  __init__.py), except when the importer lives inside a: Python has started that package already."""
  package = module if path.name == "__init__.py" else module.rpartition(".")[0]
  targets = set()
  for node in import_statements(parsed(path), functions):
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
  # Module level only: the import inside f is left out.
  assert imported("hrnn.pkg.sub", source, known, functions=False) == {"hrnn.x", "hrnn.pkg.other"}


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


# ---------------------------------------------------------------------------------------------------- layers

# The one import upwards: the sampler loads a run's checkpoint (hrnn.train builds on hrnn.model), inside a function.
LAZY_UPWARD = {("hrnn.model.sampling", "hrnn.train"), ("hrnn.model.sampling", "hrnn.train.checkpoint")}
TOP = ("hrnn.cli", "hrnn.bench", "hrnn.__main__")


def _within(name: str, *packages: str) -> bool:
  return any(name == p or name.startswith(p + ".") for p in packages)


def layering_violations(eager: dict[str, set[str]], lazy: dict[str, set[str]]) -> list[str]:
  """'importer -> imported: rule' for each import that breaks the layers. `eager`: imports at module level; `lazy`:
  imports inside functions (by module, as `imported` finds them).

    hrnn.ops      imports only hrnn.ops, hrnn.config and hrnn.errors (kernels know nothing above them)
    hrnn.model    imports neither hrnn.paper, hrnn.cli nor hrnn.bench, and hrnn.train only at LAZY_UPWARD
    hrnn.cli      the command line: with hrnn.bench (its benchmarks, subcommand modules) and hrnn.__main__ the top
                  layer (TOP); nothing else imports hrnn.cli or hrnn.bench
  """
  problems = []
  for importer in sorted(eager.keys() | lazy.keys()):
    for target in sorted(eager.get(importer, set()) | lazy.get(importer, set())):
      lazily = target not in eager.get(importer, set())
      if _within(importer, "hrnn.ops") and not (_within(target, "hrnn.ops") or target in ("hrnn.config",
                                                                                           "hrnn.errors")):
        problems.append(f"{importer} -> {target}: hrnn.ops imports only hrnn.ops, hrnn.config and hrnn.errors")
      if _within(importer, "hrnn.model") and _within(target, "hrnn.paper", "hrnn.cli", "hrnn.bench"):
        problems.append(f"{importer} -> {target}: the model imports neither the paper, the CLI nor the benchmarks")
      if (_within(importer, "hrnn.model") and _within(target, "hrnn.train")
          and not (lazily and (importer, target) in LAZY_UPWARD)):
        problems.append(f"{importer} -> {target}: the model reaches hrnn.train only inside a function at "
                        f"{sorted(LAZY_UPWARD)}")
      if _within(target, "hrnn.cli", "hrnn.bench") and not _within(importer, *TOP):
        problems.append(f"{importer} -> {target}: only the command line (hrnn.cli, hrnn.bench) imports it")
  return problems


def test_layering_violations_are_found_in_a_made_up_graph():
  eager = {
      "hrnn.ops.scan": {"hrnn.ops.native", "hrnn.config", "hrnn.model.lru"},  # ops reaching into the model
      "hrnn.model.lru": {"hrnn.ops.scan", "hrnn.paper.published"},  # model importing the paper
      "hrnn.model.blocks": {"hrnn.train.loop"},  # model importing training at module level
      "hrnn.model.sampling": {"hrnn.data"},
      "hrnn.data.pipeline": {"hrnn.cli"},  # below the command line importing it
      "hrnn.bench.train": {"hrnn.cli.metrics", "hrnn.train.loop"},  # the top layer may import anything
  }
  lazy = {"hrnn.model.sampling": {"hrnn.train.checkpoint"},  # the documented lazy place: allowed
          "hrnn.model.summary": {"hrnn.train.checkpoint"}}  # lazily, but not at the documented place
  assert layering_violations(eager, lazy) == [
      "hrnn.data.pipeline -> hrnn.cli: only the command line (hrnn.cli, hrnn.bench) imports it",
      "hrnn.model.blocks -> hrnn.train.loop: the model reaches hrnn.train only inside a function at "
      f"{sorted(LAZY_UPWARD)}",
      "hrnn.model.lru -> hrnn.paper.published: the model imports neither the paper, the CLI nor the benchmarks",
      "hrnn.model.summary -> hrnn.train.checkpoint: the model reaches hrnn.train only inside a function at "
      f"{sorted(LAZY_UPWARD)}",
      "hrnn.ops.scan -> hrnn.model.lru: hrnn.ops imports only hrnn.ops, hrnn.config and hrnn.errors",
  ]
  assert layering_violations({"hrnn.model.sampling": {"hrnn.train.checkpoint"}}, {}) != []  # eager: not allowed


def test_hrnn_keeps_its_layers():
  known = modules()
  assert {"hrnn.ops.scan", "hrnn.model.sampling", "hrnn.cli.train", "hrnn.bench.train"} <= set(known)
  full = {name: imported(name, path, set(known)) for name, path in known.items()}
  eager = {name: imported(name, path, set(known), functions=False) for name, path in known.items()}
  lazy = {name: full[name] - eager[name] for name in known}
  assert "hrnn.ops.scan" in eager["hrnn.model.lru"]  # the graph is the real one
  assert layering_violations(eager, lazy) == []


# ---------------------------------------------------------------------------------------------------- references

PATH = re.compile(r"\bhrnn/(?:\w+/)*\w+\.py\b")  # hrnn/train/loop.py
DOTTED = re.compile(r"(?<![\w./-])hrnn(?:\.\w+)+(?![\w-])")  # hrnn.train.loop.read_metrics (not a file name's hrnn.egg)


def defined_names(body: list[ast.stmt]) -> dict[str, ast.AST | str]:
  """The names a module or class body binds: name -> its def / class node, or for `from M import name` the dotted
  source 'M.name' (followed when a reference goes deeper), else the binding statement."""
  names = {}
  statements = list(body)
  while statements:
    node = statements.pop(0)
    if isinstance(node, (ast.If, ast.Try)):  # module-level conditionals bind names too
      statements += node.body + node.orelse + getattr(node, "finalbody", []) + [
          s for handler in getattr(node, "handlers", []) for s in handler.body]
    elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
      names[node.name] = node
    elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
      for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
        names.update({name.id: node for name in ast.walk(target) if isinstance(name, ast.Name)})
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      names.update({a.asname or a.name: f"{node.module}.{a.name}" for a in node.names})
    elif isinstance(node, ast.Import):
      names.update({a.asname or a.name.split(".")[0]: a.name if a.asname else a.name.split(".")[0]
                    for a in node.names})
  return names


def resolves(dotted: str, known: dict[str, Path]) -> bool:
  """Whether `dotted` names an hrnn module, or a name its module (a class: its body) defines or imports, read from
  the source without importing it (following `from M import name` into M)."""
  parts = dotted.split(".")
  for i in range(len(parts), 0, -1):
    module = ".".join(parts[:i])
    if module in known:
      break
  else:
    return False
  rest = parts[i:]
  body = parsed(known[module]).body
  while rest:
    names = defined_names(body)
    if rest[0] not in names:
      return False
    found = names[rest[0]]
    if isinstance(found, str):  # imported: resolve it where it comes from (outside hrnn: trust the import)
      return not found.startswith("hrnn.") or resolves(".".join([found, *rest[1:]]), known)
    if isinstance(found, ast.ClassDef):
      body = found.body
    elif len(rest) > 1:  # an attribute of a function or value: not checkable from the source
      return isinstance(found, (ast.Assign, ast.AnnAssign))
    rest = rest[1:]
  return True


def documented_references() -> dict[str, set[str]]:
  """file (relative to the repository) -> the hrnn/...py paths and hrnn.a.b names it mentions: README.md,
  docs/*.md, every module of hrnn (docstrings, comments and strings) and the notebooks."""
  files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(ROOT.rglob("*.py")),
           *sorted((REPO / "notebooks").glob("*.ipynb"))]
  found = {}
  for path in files:
    text = path.read_text()
    found[str(path.relative_to(REPO))] = set(PATH.findall(text)) | set(DOTTED.findall(text))
  return found


def unresolved(references: dict[str, set[str]], known: dict[str, Path]) -> list[str]:
  """'file: reference' for each path that is no file of the repository and each dotted name that `resolves` not."""
  return [f"{file}: {ref}" for file, refs in sorted(references.items()) for ref in sorted(refs)
          if not ((REPO / ref).is_file() if ref.endswith(".py") and "/" in ref else resolves(ref, known))]


def test_reference_resolver_rejects_made_up_names():
  known = modules()
  real = {"hrnn.config", "hrnn.config.SCALES", "hrnn.config.TrainConfig.override", "hrnn.config.ModelConfig.remat",
          "hrnn.data.prepare", "hrnn.train.loop.read_metrics", "hrnn.model.harmonic_rnn.HarmonicRNN",
          "hrnn/train/loop.py", "hrnn/cli/__init__.py"}
  made_up = {"hrnn.paper.paper", "hrnn.train.loop.read_metric", "hrnn.config.TrainConfig.lr", "hrnn.scales",
             "hrnn.model.harmonic_rnn.HarmonicRNN.no_such_method", "hrnn/train.py", "hrnn/paper/paper.py"}
  assert unresolved({"doc.md": real}, known) == []
  assert unresolved({"doc.md": real | made_up}, known) == sorted(f"doc.md: {ref}" for ref in made_up)
  assert DOTTED.findall("see hrnn.config.SCALES. Also hrnn.egg-info, pkg/hrnn.x and `hrnn.data`") == [
      "hrnn.config.SCALES", "hrnn.data"]


def test_every_documented_module_path_and_name_exists():
  references = documented_references()
  assert "hrnn.paper.published" in references["README.md"] and "hrnn/paper/published.py" in str(references)
  assert any(refs for file, refs in references.items() if file.endswith(".ipynb"))
  assert unresolved(references, modules()) == []


# ---------------------------------------------------------------------------------------------------- README Layout


def layout_rows(readme: str) -> list[list[str]]:
  """The paths of each row of README's Layout table, in order (`hrnn/x/y.py`, or a folder `hrnn/x/`)."""
  section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
  return [re.findall(r"`([^`]+)`", line.split("|")[1]) for line in section.splitlines() if line.startswith("| `")]


def layout_order(rows: list[list[str]], known: dict[str, Path]) -> dict[str, int]:
  """Each module's row in the Layout: the row naming its file, else the one naming its folder; a package that no
  row names (its __init__ only says what it holds) takes its first module's row."""
  order = {}
  for name, path in known.items():
    relative = str(path.relative_to(REPO))
    hits = [i for i, paths in enumerate(rows) if relative in paths] or [
        i for i, paths in enumerate(rows) for p in paths if p.endswith("/") and relative.startswith(p)]
    if hits:
      order[name] = hits[0]
  for name, path in known.items():
    children = [order[m] for m in order if m.startswith(name + ".")]
    if name not in order and path.name == "__init__.py" and children:
      order[name] = min(children)
  return order


def layout_violations(order: dict[str, int], graph: dict[str, set[str]]) -> list[str]:
  """'importer -> imported' for each import of a module listed below its importer (LAZY_UPWARD excepted)."""
  return [f"{importer} -> {target}" for importer in sorted(graph) for target in sorted(graph[importer])
          if order[target] > order[importer] and (importer, target) not in LAZY_UPWARD]


def test_layout_order_violations_are_found():
  rows = [["hrnn/a.py"], ["hrnn/pkg/"], ["hrnn/b.py", "hrnn/c.py"]]
  known = {name: REPO / (name.replace(".", "/") + ".py") for name in ("hrnn.a", "hrnn.b", "hrnn.c")}
  known |= {"hrnn.pkg": REPO / "hrnn/pkg/__init__.py", "hrnn.pkg.x": REPO / "hrnn/pkg/x.py"}
  order = layout_order(rows, known)
  assert order == {"hrnn.a": 0, "hrnn.pkg": 1, "hrnn.pkg.x": 1, "hrnn.b": 2, "hrnn.c": 2}
  assert layout_violations(order, {"hrnn.b": {"hrnn.a", "hrnn.c"}, "hrnn.pkg.x": {"hrnn.a"}}) == []
  assert layout_violations(order, {"hrnn.a": {"hrnn.pkg.x"}, "hrnn.pkg.x": {"hrnn.b"}}) == [
      "hrnn.a -> hrnn.pkg.x", "hrnn.pkg.x -> hrnn.b"]
  assert layout_rows("# x\n## Layout\n\n| path | what |\n|---|---|\n| `hrnn/a.py`, `hrnn/b/` | `x` |\n## Next\n") == [
      ["hrnn/a.py", "hrnn/b/"]]


def test_readme_layout_lists_every_module_from_the_bottom_up():
  known = modules()
  rows = layout_rows((REPO / "README.md").read_text())
  order = layout_order(rows, known)
  assert sorted(set(known) - set(order) - {"hrnn"}) == []  # every module has its row
  assert [p for paths in rows for p in paths if p.startswith("hrnn/") and not (REPO / p).exists()] == []
  graph = {name: imported(name, path, set(known)) for name, path in known.items() if name != "hrnn"}
  assert layout_violations(order, graph) == []


# ---------------------------------------------------------------------------------------------------- lazy imports

def lazy_import_places(source: str) -> dict[str, bool]:
  """Function name -> whether its imports say why they are there: a comment on (or just above) its first import
  statement, or a docstring that speaks of importing; one entry per function that holds an import statement."""
  lines = source.splitlines()
  places = {}
  for function in ast.walk(ast.parse(source)):
    if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
      statements = list(import_statements(ast.Module(body=function.body, type_ignores=[]), functions=False))
      if statements:
        first = min(statements, key=lambda node: node.lineno)
        docstring = ast.get_docstring(function) or ""
        places[function.name] = ("#" in lines[first.lineno - 1] or lines[first.lineno - 2].strip().startswith("#")
                                 or "import" in docstring.lower())
  return places


def test_lazy_import_places_are_found():
  source = ('import os\n\ndef a():\n  # JAX: only when it runs\n  import jax\n\ndef b():\n  """Imports numpy here."""\n'
            '  import numpy\n\ndef c():\n  x = 1\n  import sys\n\ndef d():\n  return os.sep\n')
  assert lazy_import_places(source) == {"a": True, "b": True, "c": False}


def test_imports_inside_functions_sit_at_one_commented_place_per_module():
  # Imports inside functions only keep `hrnn --help` fast (or load a heavy optional dependency, or the sampler's
  # one import from hrnn.train), and then at one place per module that says why.
  scattered, silent = [], []
  for name, path in sorted(modules().items()):
    places = lazy_import_places(path.read_text())
    if len(places) > 1:
      scattered.append(f"{name}: {', '.join(places)}")
    silent += [f"{name}.{function}" for function, why in places.items() if not why]
  assert scattered == [] and silent == []
