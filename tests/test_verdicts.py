"""hrnn.paper.verdicts: each claim's verdict from small hand-made tables, expected verdicts worked out by hand."""

import csv
import json

import pytest

from hrnn.paper import published
from hrnn.paper import verdicts
from hrnn.paper.verdicts import CONTRADICTED, NOT_AT_SCALE, NOT_RUN, REPRODUCED


def _seeds(out, key, columns, rows, datasets=("sc09-espeak",)):
  """OUT/tables/KEY_seeds.csv from {label: [values of seed 0, seed 1, ...]} (each value a tuple over columns)."""
  tables = out / "tables"
  tables.mkdir(parents=True, exist_ok=True)
  with (tables / f"{key}_seeds.csv").open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["row", "seed", *columns])
    for label, per_seed in rows.items():
      for seed, values in enumerate(per_seed):
        writer.writerow([label, seed, *values])
  (tables / f"{key}_seeds.json").write_text(json.dumps({"preset": "cpu", "datasets": list(datasets),
                                                        "hardware": "1 x cpu"}))


def _table(out, key, columns, rows, datasets):
  tables = out / "tables"
  tables.mkdir(parents=True, exist_ok=True)
  with (tables / f"{key}.csv").open("w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["model", *columns])
    for label, values in rows.items():
      writer.writerow([label, *values])
  (tables / f"{key}.json").write_text(json.dumps({"preset": "paper", "datasets": list(datasets)}))


def _table1(out, dense, groups4, diagonal):
  _seeds(out, "table1", [published.NLL], {"dense": [(v,) for v in dense], "4 groups": [(v,) for v in groups4],
                                      "diagonal": [(v,) for v in diagonal]})


def test_spread_and_the_two_standard_error_rule():
  s = verdicts.Spread.of([5.30, 5.31, 5.32])
  assert s.mean == pytest.approx(5.31) and s.sd == pytest.approx(0.01) and s.n == 3
  assert verdicts.Spread.of([2.0]).sd == 0.0 and verdicts.Spread.of([float("nan")]).n == 0
  a, b = verdicts.Spread(5.31, 0.01, 3), verdicts.Spread(5.41, 0.01, 3)
  d, se = verdicts.difference(a, b)
  assert d == pytest.approx(0.10) and se == pytest.approx((2 * 0.0001 / 3) ** 0.5)  # 0.00816
  assert verdicts.lower(a, b) == "a" and verdicts.lower(b, a) == "b"
  # d = 0.02 against 2 se = 2 sqrt(0.04^2/3 + 0.01^2/3) = 0.0476: within noise.
  assert verdicts.lower(a, verdicts.Spread(5.33, 0.04, 3)) == "="


def test_table1_reproduced_when_4_groups_lowest_and_dense_highest(tmp_path):
  # 4 groups 5.31 vs diagonal 5.41: d = 0.10 > 2 se = 0.0163; dense 5.52 vs diagonal: d = 0.11 > 2 se = 0.0258.
  _table1(tmp_path, dense=[5.50, 5.52, 5.54], groups4=[5.30, 5.31, 5.32], diagonal=[5.40, 5.41, 5.42])
  best, dense = verdicts.table1_verdicts(tmp_path, {})
  assert best.verdict == REPRODUCED and dense.verdict == REPRODUCED
  assert "4 groups 5.31 ± 0.01 (n=3)" in best.evidence


def test_table1_within_noise_and_contradicted(tmp_path):
  # diagonal 5.33 +- 0.04: 4 groups lower by 0.02 < 2 se = 0.0476 -> cannot tell; dense clearly highest.
  _table1(tmp_path, dense=[5.50, 5.52, 5.54], groups4=[5.30, 5.31, 5.32], diagonal=[5.29, 5.33, 5.37])
  best, dense = verdicts.table1_verdicts(tmp_path, {})
  assert best.verdict == NOT_AT_SCALE and "within seed noise" in best.why and "0.006 bits" in best.why
  assert dense.verdict == REPRODUCED
  # 4 groups 5.51 above diagonal 5.41 by 0.10 > 0.0163: the opposite of the claim; dense now below 4 groups.
  _table1(tmp_path, dense=[5.50, 5.52, 5.54], groups4=[5.50, 5.51, 5.52], diagonal=[5.40, 5.41, 5.42])
  best, dense = verdicts.table1_verdicts(tmp_path, {})
  assert best.verdict == CONTRADICTED and dense.verdict == NOT_AT_SCALE  # dense vs 4 groups: d = 0.01 < 2 se


def test_one_seed_gives_no_comparison(tmp_path):
  _table1(tmp_path, dense=[5.6], groups4=[5.3], diagonal=[5.4])
  for v in verdicts.table1_verdicts(tmp_path, {}):
    assert v.verdict == NOT_AT_SCALE and "only 1 seed(s)" in v.why


def test_missing_tables_read_not_run_naming_the_notebook(tmp_path):
  statuses = {"02_group_ablation": {"notebook": "02_group_ablation", "error": "cell [5] (`runs = ...`): OSError: x"}}
  found = {v.claim: v for v in verdicts.verdicts(tmp_path, statuses)}
  assert all(v.verdict == NOT_RUN for v in found.values())
  assert found[verdicts.TABLE1_BEST[0]].why == "notebook `02_group_ablation` failed at cell [5] (`runs = ...`): OSError: x"
  assert found[verdicts.FIG2[0]].why == "notebook `01_embedding_curves` was not run"
  assert found[verdicts.VALUES_MUSIC[0]].why == "notebook `04_sota_comparison` was not run"


def _table2(out, nll_offset, base_is, speeds=((30.0, 11.0), (10.0, 10.0))):
  """Baseline / one pool / no pooling over 3 seeds: NLL 5.000, 5.002, 5.004 (+ offset for no pooling)."""
  (base_train, base_gen), (flat_train, flat_gen) = speeds
  rows = {
      "baseline": [(base_train, base_gen, 5.000 + i * 0.002, f, s) for i, (f, s) in
                   enumerate(zip((1.0, 1.2, 0.8), base_is))],
      "1 pool layer": [(20.0, 10.5, 5.000 + i * 0.002, f, s) for i, (f, s) in
                       enumerate(zip((7.0, 7.5, 6.5), (2.0, 2.1, 1.9)))],
      "no pooling": [(flat_train, flat_gen, 5.000 + i * 0.002 + nll_offset, f, s) for i, (f, s) in
                     enumerate(zip((3.0, 3.2, 2.8), (3.0, 3.1, 2.9)))],
  }
  _seeds(out, "table2", ["train speed (epoch/h)", "inference (ktok/s)", published.NLL, "FID", "IS"], rows)


def test_table2_speed_nll_and_quality(tmp_path):
  # Train ratio 30 / 10 = 3 >= 1.5; generation 11 / 10 = 1.1: between 1 and 1.5. NLL: no pooling +0.005 with
  # se = sqrt(2 * 0.002^2 / 3) = 0.00163: |d| + 2 se = 0.0083 <= 0.02. Baseline FID 1.0 vs 7.0 / 3.0 (se ~0.3),
  # IS 5.0 vs 2.0 / 3.0: better beyond 2 se everywhere.
  _table2(tmp_path, 0.005, (5.0, 5.2, 4.8))
  train, generate, nll, quality = verdicts.table2_verdicts(tmp_path, {})
  assert train.verdict == REPRODUCED and "ratio 3 " in train.evidence
  assert generate.verdict == NOT_AT_SCALE and "ratio 1.1 " in generate.evidence
  assert nll.verdict == REPRODUCED and quality.verdict == REPRODUCED
  # No pooling 0.1 bits worse: 0.1 - 0.0033 > 0.02. Pooled generation slower: 9 / 10 < 1.
  _table2(tmp_path, 0.1, (5.0, 5.2, 4.8), speeds=((30.0, 9.0), (10.0, 10.0)))
  _, generate, nll, _ = verdicts.table2_verdicts(tmp_path, {})
  assert nll.verdict == CONTRADICTED and generate.verdict == CONTRADICTED


def test_table2_quality_needs_digits(tmp_path):
  _table2(tmp_path, 0.005, (1.02, 1.03, 1.01))  # IS ~1: every sample in one class
  quality = verdicts.table2_verdicts(tmp_path, {})[3]
  assert quality.verdict == NOT_AT_SCALE and "not recognisable digits (IS 1.02 < 3;" in quality.why


def test_fig2(tmp_path):
  columns = [verdicts.CONVERGENCE, published.NLL]
  clear = {"sinusoidal": [(5.0, 4.9), (5.01, 4.91), (5.02, 4.92)]}
  clear.update({e: [(5.5, 5.3), (5.51, 5.31), (5.52, 5.32)] for e in verdicts.EMBEDDINGS[1:]})
  _seeds(tmp_path, "fig2", columns, clear)
  assert verdicts.fig2_verdict(tmp_path, {}).verdict == REPRODUCED
  clear["learned"] = [(4.5, 4.5), (4.51, 4.51), (4.52, 4.52)]  # learned converges faster: the opposite
  _seeds(tmp_path, "fig2", columns, clear)
  assert verdicts.fig2_verdict(tmp_path, {}).verdict == CONTRADICTED
  clear["learned"] = [(4.9, 5.0), (5.0, 5.3), (5.1, 5.6)]  # sd 0.1 / 0.3: within noise of sinusoidal
  _seeds(tmp_path, "fig2", columns, clear)
  assert verdicts.fig2_verdict(tmp_path, {}).verdict == NOT_AT_SCALE


def test_published_values_only_on_the_papers_data(tmp_path):
  columns = [published.PARAMS, published.NLL, "FID", "IS"]
  _table(tmp_path, "table3", columns, {"HarmonicRNN baseline": (0.5, 5.4, 420.0, 1.02)}, ["sc09-espeak"])
  sc09 = verdicts.values_verdicts(tmp_path, {})[0]
  assert sc09.verdict == NOT_AT_SCALE and "sc09-espeak, not the paper's data" in sc09.why
  # |1.86 - 1.854| = 0.006 <= 0.02, |0.5 - 0.46| <= 0.5, |6.2 - 6.46| = 0.26 <= 0.5.
  _table(tmp_path, "table3", columns, {"HarmonicRNN baseline": (7.3, 1.86, 0.5, 6.2)}, ["sc09"])
  assert verdicts.values_verdicts(tmp_path, {})[0].verdict == REPRODUCED
  _table(tmp_path, "table3", columns, {"HarmonicRNN baseline": (7.3, 1.90, 0.5, 6.2)}, ["sc09"])  # 0.046 > 0.02
  sc09 = verdicts.values_verdicts(tmp_path, {})[0]
  assert sc09.verdict == CONTRADICTED and "baseline test NLL (bits)" in sc09.why
  _table(tmp_path, "table4", ["Beethoven", "YouTubeMix"], {"HarmonicRNN": (0.92, 1.33)}, ["beethoven", "youtubemix"])
  assert verdicts.values_verdicts(tmp_path, {})[1].verdict == REPRODUCED
