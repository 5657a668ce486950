"""THE PUBLISHED NUMBERS: every result this kit sets its own runs against, as data with its source.

This is the only place in hrnn where published results live (the papers' tables, plus SaShiMi's real-data
reference rows). Nothing here is computed; the notebooks never read it. `hrnn.paper.reproduce` puts these
numbers beside the numbers a run wrote to `OUT/tables/KEY.csv` (same `key`, same row labels, same column names).

`None` marks a value the source does not report (shown as "-").
"""

from __future__ import annotations

import dataclasses

HARMONICRNN = "Szewczyk, Gallo Fernández and Townsend, 'Linear RNNs for autoregressive generation of long music samples'"
SASHIMI = "Goel et al. (2022), 'It's Raw! Audio Generation with State-Space Models' (SaShiMi)"
MAMBA = "Gu and Dao (2024), 'Mamba: Linear-Time Sequence Modeling with Selective State Spaces'"

NLL = "test NLL (bits)"
PARAMS = "params (M)"


@dataclasses.dataclass(frozen=True)
class Row:
  """One published row: `values` align with the table's `columns`; `source` overrides the table's source."""

  label: str
  values: tuple[float | None, ...]
  source: str | None = None


@dataclasses.dataclass(frozen=True)
class PaperTable:
  """A published table and the notebook that regenerates it.

  key: file stem of the run's table (`OUT/tables/{key}.csv`); row_label: header of the label column;
  columns: the value columns, named exactly as the run's CSV names them.
  """

  key: str
  title: str
  source: str
  notebook: str
  row_label: str
  columns: tuple[str, ...]
  rows: tuple[Row, ...]
  note: str = ""

  def __post_init__(self):
    for row in self.rows:
      if len(row.values) != len(self.columns):
        raise ValueError(f"{self.key}: row {row.label!r} has {len(row.values)} values for {len(self.columns)} "
                         f"columns")

  def published(self, label: str, column: str) -> float | None:
    """The published value of (row, column), None when not reported or the row is not published."""
    for row in self.rows:
      if row.label == label:
        return row.values[self.columns.index(column)]
    return None


@dataclasses.dataclass(frozen=True)
class PaperFigure:
  """A published figure: its finding in words, the plot a run draws and the table of the run's end points."""

  key: str
  title: str
  source: str
  notebook: str
  finding: str
  plot: str  # file name under OUT/plots/


TABLES: tuple[PaperTable, ...] = (
    PaperTable(
        key="table1",
        title="Table 1: feature groups of the pooling convolutions (SC09)",
        source=f"{HARMONICRNN}, Table 1",
        notebook="02_group_ablation",
        row_label="pooling groups",
        columns=("groups", PARAMS, NLL),
        rows=(
            Row("dense", (1, 7.8, 1.956)),
            Row("4 groups", (4, 7.4, 1.848)),
            Row("diagonal", (128, 7.3, 1.854)),
        ),
        note="Diagonal (depthwise) means groups = feature width: 128 in the paper configuration.",
    ),
    PaperTable(
        key="table2",
        title="Table 2: pooling configuration, total layer count held constant (SC09)",
        source=f"{HARMONICRNN}, Table 2",
        notebook="03_pooling_ablation",
        row_label="pooling",
        columns=("train speed (epoch/h)", "inference (ktok/s)", NLL, "FID", "IS"),
        rows=(
            Row("baseline", (11.5, 103, 1.854, 0.46, 6.46)),
            Row("1 pool layer", (6.7, 55, 1.853, 6.85, 2.03)),
            Row("no pooling", (6.1, 46, 1.852, 2.95, 3.33)),
        ),
        note="Published speeds are on TPU, inference batch size and length equal to training's. The one-pool model "
        "has pool factor 2 with 2/3 of the temporal blocks outside the pooling and 1/3 inside.",
    ),
    PaperTable(
        key="table3",
        title="Table 3: comparison with the prior state of the art (SC09)",
        source=f"{HARMONICRNN}, Table 3",
        notebook="04_sota_comparison",
        row_label="model",
        columns=(PARAMS, NLL, "FID", "IS"),
        rows=(
            Row("HarmonicRNN baseline", (7.3, 1.854, 0.46, 6.46)),
            Row("HarmonicRNN 4 conv groups", (7.4, 1.848, None, None)),
            Row("SaShiMi", (5.8, 1.873, 1.99, 5.13), source=f"{MAMBA}, as quoted in {HARMONICRNN}, Table 3"),
            Row("Mamba", (6.1, 1.852, 0.94, 6.26), source=f"{MAMBA}, as quoted in {HARMONICRNN}, Table 3"),
        ),
        note="SaShiMi's numbers are those reported by Gu and Dao (2024), not the original SaShiMi paper's.",
    ),
    PaperTable(
        key="table4",
        title="Table 4: test NLL on the music datasets",
        source=f"{HARMONICRNN}, Table 4",
        notebook="04_sota_comparison",
        row_label="model",
        columns=("Beethoven", "YouTubeMix"),
        rows=(
            Row("HarmonicRNN", (0.915, 1.324)),
            Row("SaShiMi", (0.946, 1.294)),
        ),
        note="Bits per sample. The paper trained on whole minute-long YouTubeMix sequences; SaShiMi on 8 s chunks.",
    ),
    PaperTable(
        key="sc09_quality",
        title="SC09 sample quality: NLL and the classifier metrics (FID, IS, mIS, AM)",
        source=f"{MAMBA}, SC09 table",
        notebook="05_fid_is",
        row_label="model",
        columns=(NLL, "FID", "IS", "mIS", "AM"),
        rows=(
            Row("SampleRNN", (2.042, 8.96, 1.71, 3.02, 1.76)),
            Row("WaveNet", (1.925, 5.08, 2.27, 5.80, 1.47)),
            Row("SaShiMi", (1.873, 1.99, 5.13, 42.57, 0.74)),
            Row("Mamba 6.1M", (1.852, 0.94, 6.26, 88.54, 0.52)),
            Row("Mamba 24.3M", (1.860, 0.67, 7.33, 144.9, 0.36)),
            Row("HarmonicRNN baseline", (1.854, 0.46, 6.46, None, None), source=f"{HARMONICRNN}, Table 3"),
        ),
        note="IS is SaShiMi's estimator (its script's per-class-column KL over the first half of a seed-0 "
        "shuffle), neither the textbook IS nor torch-fidelity's 10-split ISC. FID against the "
        "training set's classifier features.",
    ),
    PaperTable(
        key="sc09_reference",
        title="SC09 reference rows: the dataset's own train and test clips scored like the samples",
        source=f"{SASHIMI}, SC09 table (real-data rows)",
        notebook="05_fid_is",
        row_label="data",
        columns=("FID", "IS", "mIS", "AM"),
        rows=(
            Row("train", (0.00, 8.56, 292.5, 0.16)),
            Row("test", (0.02, 8.33, 257.6, 0.19)),
        ),
        note="Each split's clips scored against the training set, with the same classifier as the models: what a "
        "perfect model would score. The published rows are SaShiMi's, on SC09's real recordings; this run's are "
        "on the dataset it names.",
    ),
)

FIGURES: tuple[PaperFigure, ...] = (
    PaperFigure(
        key="fig2",
        title="Figure 2: training curves of four input embeddings (SC09)",
        source=f"{HARMONICRNN}, Fig. 2",
        notebook="01_embedding_curves",
        finding="Sinusoidal embeddings train consistently better than linear scaling, a learned embedding table and "
        "a learned table with dropout: significantly faster convergence and a better final loss.",
        plot="fig2_embedding_curves.png",
    ),
)


def table(key: str) -> PaperTable:
  """The published table with this key (KeyError names the known keys)."""
  for t in TABLES:
    if t.key == key:
      return t
  raise KeyError(f"no published table {key!r}; known: {', '.join(t.key for t in TABLES)}")
