"""hrnn.paper.published: the published numbers are well-formed and each table names the notebook that regenerates it."""

import pytest

from hrnn.paper import published
from hrnn.paper.reproduce import NOTEBOOKS_DIR


def test_keys_are_unique_and_rows_fit_their_columns():
  keys = [t.key for t in published.TABLES] + [f.key for f in published.FIGURES]
  assert len(keys) == len(set(keys))
  for t in published.TABLES:
    assert all(len(r.values) == len(t.columns) for r in t.rows)
    assert len({r.label for r in t.rows}) == len(t.rows)
  with pytest.raises(ValueError, match="row 'x' has 1 values for 2 columns"):
    published.PaperTable("k", "t", "s", "nb", "row", ("a", "b"), (published.Row("x", (1.0,)),))


def test_lookup():
  t = published.table("table1")
  assert t.published("4 groups", published.NLL) == t.rows[1].values[2]
  assert t.published("no such row", published.NLL) is None
  with pytest.raises(KeyError, match="known: table1"):
    published.table("table9")


def test_every_regenerating_notebook_exists():
  names = {p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")}
  assert {t.notebook for t in published.TABLES} | {f.notebook for f in published.FIGURES} <= names
