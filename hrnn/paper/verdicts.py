"""A verdict per claim of the paper, computed from the tables a run wrote (`OUT/tables/KEY.csv`).

Each claim is judged by a stated rule on this run's numbers; nothing here is written by hand per run:

  reproduced                      the run shows the claimed effect beyond the stated threshold
  contradicted                    the run shows the opposite effect beyond the same threshold
  not reproduced at this scale    the run cannot tell (differences within seed noise, samples that are not
                                  digits, another dataset than the paper's, fewer than MIN_SEEDS seeds); `why` says
                                  which
  not run                         an input table is missing; `why` names the notebook (and its failure)

Comparisons of two models use every seed of each (the `KEY_seeds.csv` tables, one row per model and seed):

  d = mean_B - mean_A,   se = sqrt(sd_A^2 / n_A + sd_B^2 / n_B)     (sd: sample standard deviation over seeds)
  "A lower than B"  when d > Z * se;  "B lower than A"  when d < -Z * se;  else "within seed noise"

with Z = 2 (about a 95% interval). An equality claim ("same NLL") holds when the whole interval |d| + Z se is
within SAME_NLL_BITS, fails when |d| - Z se exceeds it.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path

from hrnn.paper.published import NLL
from hrnn.paper.published import table as published_table

REPRODUCED = "reproduced"
NOT_AT_SCALE = "not reproduced at this scale"
CONTRADICTED = "contradicted"
NOT_RUN = "not run"

Z = 2.0  # standard errors that make a difference of means count
MIN_SEEDS = 3  # seeds per model below which seed noise is unknown and no NLL comparison is judged
SAME_NLL_BITS = 0.02  # "same NLL": the 2-se interval of the difference must lie within +-0.02 bits
SPEEDUP = 1.5  # "about 2x faster": pooled / unpooled throughput >= 1.5 reproduces it, < 1 contradicts it
DIGITS_IS = 3.0  # IS below which the baseline's samples are not recognisable digits: FID/IS orderings not judged
VALUE_TOLERANCE = {NLL: 0.02, "FID": 0.5, "IS": 0.5}  # |this run - paper| that reproduces a published value
PAPER_DATASETS = {"sc09", "beethoven", "youtubemix"}  # the paper's data: only on it are values comparable


@dataclasses.dataclass(frozen=True)
class Verdict:
  """One claim: what the paper says, the verdict, the numbers behind it and (when not reproduced) why."""

  claim: str
  source: str
  verdict: str
  evidence: str
  why: str = ""


@dataclasses.dataclass(frozen=True)
class Spread:
  """A quantity over seeds: mean, sample standard deviation (0 for one seed) and the number of seeds."""

  mean: float
  sd: float
  n: int

  @classmethod
  def of(cls, values: list[float]) -> Spread:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
      return cls(math.nan, math.nan, 0)
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return cls(mean, sd, len(values))

  def __str__(self) -> str:
    return f"{self.mean:.4g} ± {self.sd:.2g} (n={self.n})" if self.n > 1 else f"{self.mean:.4g} (n={self.n})"


def difference(a: Spread, b: Spread) -> tuple[float, float]:
  """(d, se): d = mean_b - mean_a (positive when a is lower) and the standard error of that difference."""
  return b.mean - a.mean, math.sqrt(a.sd ** 2 / a.n + b.sd ** 2 / b.n)


def lower(a: Spread, b: Spread) -> str:
  """'a' when a is lower than b beyond Z standard errors, 'b' when b is, '=' within seed noise."""
  d, se = difference(a, b)
  if d > Z * se:
    return "a"
  if d < -Z * se:
    return "b"
  return "="


# ---------------------------------------------------------------------------------------------------- inputs


@dataclasses.dataclass(frozen=True)
class Table:
  """A run's table: rows (label -> column -> value; None for empty cells) and its labels (OUT/tables/KEY.json)."""

  rows: dict[str, dict[str, float | str | None]]
  meta: dict


@dataclasses.dataclass(frozen=True)
class SeedTable:
  """A run's per-seed table KEY_seeds.csv: label -> column -> values over seeds (in seed order)."""

  values: dict[str, dict[str, list[float]]]
  meta: dict

  def spread(self, label: str, column: str) -> Spread:
    return Spread.of(self.values.get(label, {}).get(column, []))


def _cell(text: str):
  if text == "":
    return None
  try:
    return float(text)
  except ValueError:
    return text


def read_table(out: str | os.PathLike, key: str) -> Table | None:
  """OUT/tables/KEY.csv (first column: row labels), None when absent."""
  path = Path(out) / "tables" / f"{key}.csv"
  if not path.exists():
    return None
  with path.open(newline="") as f:
    rows = list(csv.reader(f))
  header = rows[0][1:]
  meta_path = path.with_suffix(".json")
  meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
  return Table({r[0]: dict(zip(header, map(_cell, r[1:]))) for r in rows[1:]}, meta)


def read_seeds(out: str | os.PathLike, key: str) -> SeedTable | None:
  """OUT/tables/KEY_seeds.csv (columns: row label, seed, quantities...), None when absent."""
  table = read_table(out, f"{key}_seeds")
  if table is None:
    return None
  path = Path(out) / "tables" / f"{key}_seeds.csv"
  with path.open(newline="") as f:
    rows = list(csv.reader(f))
  header = rows[0]
  values: dict[str, dict[str, list[float]]] = {}
  for row in rows[1:]:
    label = row[0]
    for column, text in zip(header[2:], row[2:]):
      value = _cell(text)
      if isinstance(value, float):
        values.setdefault(label, {}).setdefault(column, []).append(value)
  return SeedTable(values, table.meta)


def _not_run(claim: str, source: str, notebook: str, statuses: dict[str, dict], what: str) -> Verdict:
  status = statuses.get(notebook)
  if status is None:
    why = f"notebook `{notebook}` was not run"
  elif status.get("error"):
    why = f"notebook `{notebook}` failed at {status['error']}"
  else:
    why = f"notebook `{notebook}` ran but wrote no {what}"
  return Verdict(claim, source, NOT_RUN, "-", why)


def _few_seeds(spreads: dict[str, Spread]) -> str:
  few = {k: s.n for k, s in spreads.items() if s.n < MIN_SEEDS}
  if not few:
    return ""
  return (f"only {min(few.values())} seed(s) of {', '.join(few)}: seed noise unknown, so no NLL difference can be "
          f"judged (a comparison needs {MIN_SEEDS}; rerun with seeds={MIN_SEEDS})")


def _evidence(spreads: dict[str, Spread], unit: str = "bits") -> str:
  return "; ".join(f"{k} {s}" for k, s in spreads.items()) + (f" {unit}" if unit else "")


# ---------------------------------------------------------------------------------------------------- claims

FIG2 = ("Sinusoidal input embeddings converge fastest and reach the best loss", "Fig. 2")
TABLE1_BEST = ("4 pooling groups give the best NLL", "Table 1")
TABLE1_DENSE = ("Dense pooling (1 group) is the least stable: the worst NLL", "Table 1")
TABLE2_TRAIN = ("Pooling makes training about 2x faster (baseline vs no pooling)", "Table 2")
TABLE2_GENERATE = ("Pooling makes generation about 2x faster (baseline vs no pooling)", "Table 2")
TABLE2_NLL = ("The three pooling configurations reach the same NLL", "Table 2")
TABLE2_QUALITY = ("Pooling gives far better samples: lower FID and higher IS than one pool or no pooling", "Table 2")
VALUES_SC09 = ("The SC09 values: test NLL 1.854 bits, FID 0.46, IS 6.46 (baseline)", "Tables 2-3")
VALUES_MUSIC = ("The music values: test NLL 0.915 (Beethoven) and 1.324 (YouTubeMix) bits", "Table 4")

EMBEDDINGS = ("sinusoidal", "linear scaling", "learned", "learned + dropout")
GROUPS = ("dense", "4 groups", "diagonal")
POOLING = ("baseline", "1 pool layer", "no pooling")
CONVERGENCE = "mean train NLL (bits)"  # the area under the training curve: lower = faster convergence


def fig2_verdict(out, statuses) -> Verdict:
  """Sinusoidal beats each other embedding, beyond Z se, in convergence (mean training loss over the run) and in
  final test NLL; contradicted when another embedding beats it beyond Z se in either."""
  claim, source = FIG2
  seeds = read_seeds(out, "fig2")
  if seeds is None:
    return _not_run(claim, source, "01_embedding_curves", statuses, "per-seed table fig2_seeds")
  parts, outcomes = [], []
  for column, name in ((CONVERGENCE, "convergence (mean train NLL over the run)"), (NLL, "test NLL")):
    spreads = {e: seeds.spread(e, column) for e in EMBEDDINGS}
    parts.append(f"{name}: {_evidence(spreads)}")
    few = _few_seeds(spreads)
    if few:
      return Verdict(claim, source, NOT_AT_SCALE, "; ".join(parts), few)
    outcomes += [lower(spreads["sinusoidal"], spreads[e]) for e in EMBEDDINGS[1:]]
  evidence = "; ".join(parts)
  if "b" in outcomes:
    return Verdict(claim, source, CONTRADICTED, evidence,
                   f"another embedding is lower than sinusoidal by more than {Z:g} standard errors")
  if all(o == "a" for o in outcomes):
    return Verdict(claim, source, REPRODUCED, evidence)
  return Verdict(claim, source, NOT_AT_SCALE, evidence,
                 f"some differences are within seed noise ({Z:g} standard errors of the difference of means)")


def table1_verdicts(out, statuses) -> list[Verdict]:
  """4 groups lowest NLL (beyond Z se of both others); dense highest NLL (beyond Z se of both others)."""
  seeds = read_seeds(out, "table1")
  if seeds is None:
    return [_not_run(*c, "02_group_ablation", statuses, "per-seed table table1_seeds")
            for c in (TABLE1_BEST, TABLE1_DENSE)]
  spreads = {g: seeds.spread(g, NLL) for g in GROUPS}
  evidence = f"test NLL: {_evidence(spreads)}"
  few = _few_seeds(spreads)
  if few:
    return [Verdict(*c, NOT_AT_SCALE, evidence, few) for c in (TABLE1_BEST, TABLE1_DENSE)]
  table1 = published_table("table1")
  paper_gap = abs(table1.published("4 groups", NLL) - table1.published("diagonal", NLL))
  verdicts = []
  for (claim, source), best, sign in ((TABLE1_BEST, "4 groups", "a"), (TABLE1_DENSE, "dense", "b")):
    # "a": `best` lower than each other (4 groups best); "b": each other lower than `best` (dense worst).
    others = [g for g in GROUPS if g != best]
    outcomes = [lower(spreads[best], spreads[g]) for g in others]
    opposite = "b" if sign == "a" else "a"
    _, se = difference(spreads[best], spreads[others[-1]])
    if all(o == sign for o in outcomes):
      verdicts.append(Verdict(claim, source, REPRODUCED, evidence))
    elif opposite in outcomes:
      verdicts.append(Verdict(claim, source, CONTRADICTED, evidence,
                              f"{best} is {'higher' if sign == 'a' else 'lower'} than another configuration by "
                              f"more than {Z:g} standard errors"))
    else:
      why = f"differences within seed noise ({Z:g} se = {Z * se:.3g} bits)"
      if best == "4 groups":
        why += f"; the published gap to diagonal is {paper_gap:.3g} bits"
      verdicts.append(Verdict(claim, source, NOT_AT_SCALE, evidence, why))
  return verdicts


def _scale_note(meta: dict) -> str:
  return f"preset `{meta.get('preset', '?')}` on {meta.get('hardware', '?')}"


def table2_verdicts(out, statuses) -> list[Verdict]:
  """Speed ratios baseline / no pooling (SPEEDUP), same NLL (SAME_NLL_BITS), FID/IS ordering (needs IS >= DIGITS_IS
  for the baseline's samples to be digits at all)."""
  claims = (TABLE2_TRAIN, TABLE2_GENERATE, TABLE2_NLL, TABLE2_QUALITY)
  seeds = read_seeds(out, "table2")
  if seeds is None:
    return [_not_run(*c, "03_pooling_ablation", statuses, "per-seed table table2_seeds") for c in claims]
  verdicts = []
  table2 = published_table("table2")
  for (claim, source), column in ((TABLE2_TRAIN, "train speed (epoch/h)"), (TABLE2_GENERATE, "inference (ktok/s)")):
    base, flat = seeds.spread("baseline", column), seeds.spread("no pooling", column)
    ratio = base.mean / flat.mean if flat.n and flat.mean > 0 else math.nan
    paper_ratio = table2.published("baseline", column) / table2.published("no pooling", column)
    evidence = (f"{column}: baseline {base}, no pooling {flat}: ratio {ratio:.3g} (paper {paper_ratio:.2g}; "
                f"threshold {SPEEDUP:g})")
    if not math.isfinite(ratio):
      verdicts.append(Verdict(claim, source, NOT_RUN, evidence, f"no {column} in table2_seeds"))
    elif ratio >= SPEEDUP:
      verdicts.append(Verdict(claim, source, REPRODUCED, evidence))
    elif ratio < 1.0:
      verdicts.append(Verdict(claim, source, CONTRADICTED, evidence, "the pooled model is slower"))
    else:
      verdicts.append(Verdict(claim, source, NOT_AT_SCALE, evidence,
                              f"the ratio is below {SPEEDUP:g}; speed ratios depend on model size and hardware: "
                              f"{_scale_note(seeds.meta)}, where per-layer overheads weigh more than the "
                              f"per-token work that pooling saves (the paper: a 7.3M-parameter model on a TPU)"))

  claim, source = TABLE2_NLL
  spreads = {p: seeds.spread(p, NLL) for p in POOLING}
  evidence = f"test NLL: {_evidence(spreads)}; tolerance ±{SAME_NLL_BITS:g} bits"
  few = _few_seeds(spreads)
  if few:
    verdicts.append(Verdict(claim, source, NOT_AT_SCALE, evidence, few))
  else:
    intervals = [difference(spreads["baseline"], spreads[p]) for p in POOLING[1:]]
    if all(abs(d) + Z * se <= SAME_NLL_BITS for d, se in intervals):
      verdicts.append(Verdict(claim, source, REPRODUCED, evidence))
    elif any(abs(d) - Z * se > SAME_NLL_BITS for d, se in intervals):
      verdicts.append(Verdict(claim, source, CONTRADICTED, evidence,
                              f"a difference exceeds {SAME_NLL_BITS:g} bits beyond {Z:g} standard errors"))
    else:
      width = max(Z * se for _, se in intervals)
      verdicts.append(Verdict(claim, source, NOT_AT_SCALE, evidence,
                              f"seed noise ({Z:g} se up to {width:.3g} bits) is too large to show NLLs within "
                              f"{SAME_NLL_BITS:g} bits of each other"))

  claim, source = TABLE2_QUALITY
  fid = {p: seeds.spread(p, "FID") for p in POOLING}
  is_ = {p: seeds.spread(p, "IS") for p in POOLING}
  evidence = f"FID: {_evidence(fid, '')}; IS: {_evidence(is_, '')}"
  if any(s.n == 0 for s in (*fid.values(), *is_.values())):
    verdicts.append(Verdict(claim, source, NOT_RUN, evidence, "no FID / IS in table2_seeds"))
  elif is_["baseline"].mean < DIGITS_IS:
    verdicts.append(Verdict(claim, source, NOT_AT_SCALE, evidence,
                            f"the baseline's samples are not recognisable digits (IS {is_['baseline'].mean:.3g} < "
                            f"{DIGITS_IS:g}; 1 = one class for every sample, 10 = ten confident classes): the "
                            f"models are too small or trained too briefly for sample quality to be compared"))
  elif _few_seeds(fid):
    verdicts.append(Verdict(claim, source, NOT_AT_SCALE, evidence, _few_seeds(fid)))
  else:
    negated = {p: Spread(-s.mean, s.sd, s.n) for p, s in is_.items()}  # higher IS is better: compare -IS
    # "a": the baseline is better (lower FID, higher IS) than the model with less pooling.
    better = [lower(fid["baseline"], fid[p]) for p in POOLING[1:]]
    better += [lower(negated["baseline"], negated[p]) for p in POOLING[1:]]
    if all(o == "a" for o in better):
      verdicts.append(Verdict(claim, source, REPRODUCED, evidence))
    elif "b" in better:
      verdicts.append(Verdict(claim, source, CONTRADICTED, evidence,
                              f"a model with less pooling scores better by more than {Z:g} standard errors"))
    else:
      verdicts.append(Verdict(claim, source, NOT_AT_SCALE, evidence,
                              f"differences within seed noise ({Z:g} standard errors)"))
  return verdicts


def _value_verdict(claim: str, source: str, pairs: list[tuple[str, str, float | None, float]],
                   datasets: list[str]) -> Verdict:
  """Published values (name, VALUE_TOLERANCE key, this run, paper), judged only on the paper's datasets."""
  evidence = "; ".join(f"{name}: this run {'-' if ours is None else f'{ours:.4g}'}, paper {theirs:g}"
                       for name, _, ours, theirs in pairs)
  if not set(datasets) <= PAPER_DATASETS:
    return Verdict(claim, source, NOT_AT_SCALE, evidence,
                   f"this run used {', '.join(datasets)}, not the paper's data: values on another dataset are not "
                   f"comparable (only trends are)")
  misses = [name for name, metric, ours, theirs in pairs
            if ours is None or abs(ours - theirs) > VALUE_TOLERANCE[metric]]
  tolerance = ", ".join(f"{k} ±{v:g}" for k, v in VALUE_TOLERANCE.items())
  if misses:
    return Verdict(claim, source, CONTRADICTED, evidence, f"{', '.join(misses)} outside the tolerance ({tolerance})")
  return Verdict(claim, source, REPRODUCED, evidence + f" (tolerance {tolerance})")


def values_verdicts(out, statuses) -> list[Verdict]:
  """Tables 3 and 4: this run's HarmonicRNN values beside the published ones (VALUE_TOLERANCE)."""
  sc09 = [(f"baseline {c}", c, c) for c in (NLL, "FID", "IS")]
  music = [(f"{c} {NLL}", NLL, c) for c in ("Beethoven", "YouTubeMix")]
  return [_table_values_verdict(out, statuses, VALUES_SC09, "table3", "HarmonicRNN baseline", sc09),
          _table_values_verdict(out, statuses, VALUES_MUSIC, "table4", "HarmonicRNN", music)]


def _table_values_verdict(out, statuses, claim_source, key: str, label: str, cells) -> Verdict:
  """The verdict on row `label` of table `key`; cells: (name, metric for VALUE_TOLERANCE, column)."""
  claim, source = claim_source
  run = read_table(out, key)
  if run is None or label not in run.rows:
    return _not_run(claim, source, "04_sota_comparison", statuses, f"table {key}")
  row, paper = run.rows[label], published_table(key)
  pairs = [(name, metric, row.get(c) if isinstance(row.get(c), float) else None, paper.published(label, c))
           for name, metric, c in cells]
  return _value_verdict(claim, source, pairs, run.meta.get("datasets", ["?"]))


def verdicts(out: str | os.PathLike, statuses: dict[str, dict] | None = None) -> list[Verdict]:
  """Every claim's verdict from OUT/tables (statuses: notebook -> OUT/run_status.json entry, to name failures)."""
  statuses = statuses or {}
  return [fig2_verdict(out, statuses), *table1_verdicts(out, statuses), *table2_verdicts(out, statuses),
          *values_verdicts(out, statuses)]


def rules() -> str:
  """The thresholds, in words, for the README under the verdict table."""
  return (f"Rules: a difference of two models' means counts when it exceeds {Z:g} standard errors of the "
          f"difference over seeds (sample standard deviations, at least {MIN_SEEDS} seeds per model, else no "
          f"verdict); \"about 2x faster\" needs a throughput ratio of at least {SPEEDUP:g} (below 1 contradicts it); "
          f"\"same NLL\" needs the {Z:g}-standard-error interval of each difference within ±{SAME_NLL_BITS:g} bits; "
          f"FID/IS orderings are judged only when the baseline's IS is at least {DIGITS_IS:g} (recognisable digits); "
          f"published values are compared only on the paper's datasets, within "
          + ", ".join(f"{k} ±{v:g}" for k, v in VALUE_TOLERANCE.items()) + ". Computed by `hrnn.paper.verdicts`.")
