"""Reproducing the paper: its published numbers, its experiments at a run scale, and what a run writes.

  published    the published numbers (paper Tables 1-4, the tables they compare with), with sources
  experiments  the paper's experiments at a scale (`hrnn.config.SCALES`): training runs, sample sets, scores
  results      what the notebooks write: labelled tables, plots, listening rows with spectrograms
  verdicts     a verdict per paper claim, computed from a run's tables with stated thresholds
  curves       learning curves of sample quality from a run's checkpoints (`python -m hrnn.paper.curves`)
  reproduce    `hrnn reproduce`: runs the notebooks with papermill and writes the results README
"""
