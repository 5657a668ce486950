"""Training: the loop, evaluation, checkpoints and device meshes.

  loop        `train_and_evaluate`: AdamW with skip/clip, EMA, dropout, the metrics log (`read_metrics`), signals,
              resumption, training-only XLA options (`compiler_options`)
  evaluate    NLL in bits per sample over a whole split
  checkpoint  Orbax checkpoints with config fingerprints; `load_model` (EMA weights) for evaluation and sampling
  sharding    ("data", "seq") device meshes, batch placement (`place_batch`), replicated weights, the
              sequence-parallel forward
"""
