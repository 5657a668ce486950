"""`score()`: SaShiMi's SC09 sample-quality protocol on a folder of generated clips (its steps below).

  1. optionally keep only the samples SaShiMi scores given their likelihoods: the 40%..95% likelihood band of a
     seeded random half (`likelihood_band`; 10,240 samples -> 2,816 clips);
  2. every clip -> log-mel [32, 32] -> classifier -> penultimate features f and class probabilities p;
  3. rows, each scored against the reference dataset's train split:
       samples  the generated clips
       train    the train split itself (FID 0 by construction)       } the real-data reference rows,
       test     the test split                                       } computed here for the chosen dataset
     with FID(f_train, f), IS(p) (SaShiMi's), IS_textbook(p), mIS(p), AM(p_train, p) from
     `hrnn.metrics.scores`, plus torch-fidelity's FID and ISC of the same classifier (`hrnn.metrics.fidelity`).

The estimator behind every number is named in ESTIMATORS (and in the result's "estimators").
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from hrnn.data import default_root, load_split
from hrnn.metrics.classifier import (CLASSIFIER_SIZES, ClassifierError, ResNeXt, classifier_outputs, default_size,
                                     load_classifier, save_classifier)
from hrnn.metrics.clips import ClipError, clip_features, sample_files, split_features
from hrnn.metrics.scores import (BAND_SEED, LIKELIHOOD_BAND, MIS_PAIRS, ScoreError, am_score, check_band,
                                 frechet_distance, inception_score, inception_score_textbook, likelihood_band,
                                 modified_inception_score)

MIN_SAMPLES = 10  # torch-fidelity's ISC splits the set in 10

ESTIMATORS = {
    "fid": "FID (hrnn, numpy; SaShiMi's protocol): Frechet distance between the classifier's penultimate features "
           "of the set and of the reference train split",
    "is": "IS (SaShiMi's, as its released script computes it): first half of a seed-0 shuffle, each class column "
          "normalised over the samples, exp(mean over classes of its KL to the uniform); the estimator of "
          "published SC09 IS",
    "is_textbook": "IS (textbook, Salimans et al.): exp(mean_i KL(p_i || mean p)) over all samples; not the "
                   "estimator of published SC09 IS",
    "mis": "mIS: exp(mean KL(p_a || p_b)) over 10,000 random pairs (seed 0)",
    "am": "AM: KL(mean p_train || mean p_set) + mean entropy of p_set; lower is better",
    "fid_torch_fidelity": "FID (torch-fidelity frechet_inception_distance, same classifier features); equals fid "
                          "up to rounding",
    "isc_torch_fidelity": "ISC (torch-fidelity inception_score_mean: 10 splits of a seed-2020 shuffle, on "
                          "logits); a different estimator from IS: do not compare it with published IS",
    "isc_torch_fidelity_std": "ISC's standard deviation over torch-fidelity's 10 splits",
}
ROWS = ("train", "test", "samples")
SELECTION_RULE = (f"SaShiMi's: the likelihood band of the held-out half of a random split (NumPy seed {BAND_SEED}, "
                  f"advanced by the {MIS_PAIRS:,} mIS pairs of the reference test split, as its script draws it)")


def default_classifier_path(dataset: str, size: str, root=None) -> Path:
  """Where `hrnn metrics train-classifier` saves by default: DATA_ROOT/classifiers/{dataset}-{size}.pt."""
  return (Path(root).expanduser() if root is not None else default_root()) / "classifiers" / f"{dataset}-{size}.pt"


def resolve_classifier(classifier, dataset: str, root=None) -> tuple[ResNeXt, dict]:
  """A classifier from a model, a file, or (None) the default file of `dataset`: default_size() first, then the
  other CLASSIFIER_SIZES in order."""
  if isinstance(classifier, ResNeXt):
    return classifier.eval(), {"source": "in-memory classifier"}
  if classifier is not None:
    return load_classifier(classifier)
  sizes = [default_size(), *(s for s in CLASSIFIER_SIZES if s != default_size())]
  candidates = [default_classifier_path(dataset, size, root) for size in sizes]
  for path in candidates:
    if path.is_file():
      return load_classifier(path)
  raise ClassifierError(f"no classifier for {dataset} (looked for {', '.join(map(str, candidates))}); train one "
                        f"with `hrnn metrics train-classifier --dataset {dataset}` or pass --classifier PATH "
                        "(e.g. SaShiMi's resnext.pth)")


def select_samples(files: Sequence[Path], likelihoods, band=LIKELIHOOD_BAND, *, mis_clips: int,
                   seed: int = BAND_SEED) -> list[Path]:
  """The files SaShiMi scores given their likelihoods (`hrnn.metrics.scores.likelihood_band`), in increasing
  likelihood order: the `band` of the held-out random half.

  Args:
    files: the sample files (natural order).
    likelihoods: a mapping file name -> log-likelihood covering every file, or a sequence aligned with `files`.
    band: the kept fraction band (lo, hi) of the held-out half's likelihood ranking.
    mis_clips, seed: the NumPy state of SaShiMi's random half: seed, then an mIS over `mis_clips` clips (its
      reference test split).
  """
  if isinstance(likelihoods, Mapping):
    missing = [f.name for f in files if f.name not in likelihoods]
    if missing:
      raise ClipError(f"likelihoods missing for {len(missing)} sample files (e.g. {missing[0]}); give one "
                      "log-likelihood per file name")
    values = [likelihoods[f.name] for f in files]
  else:
    values = list(likelihoods)
    if len(values) != len(files):
      raise ClipError(f"{len(values)} likelihoods for {len(files)} sample files; give one per file, in natural "
                      "file-name order")
  for f, value in zip(files, values):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
      raise ClipError(f"log-likelihood of {f.name} is {value!r}; give a number for every sample file")
  return [files[i] for i in likelihood_band(np.asarray(values, np.float64), band, mis_clips=mis_clips, seed=seed)]


def set_scores(features_train, probs_train, features, probs) -> dict:
  """The kit's own scores of one set against the train split (see ESTIMATORS)."""
  return {"fid": frechet_distance(features_train, features), "is": inception_score(probs),
          "is_textbook": inception_score_textbook(probs), "mis": modified_inception_score(probs),
          "am": am_score(probs_train, probs)}


def score(samples_dir=None, reference: str = "sc09-espeak", *, classifier=None, root=None, likelihoods=None,
          band=LIKELIHOOD_BAND, reference_rows: bool = True, torch_fidelity: bool = True, batch_size: int = 256,
          device: str | None = None) -> dict:
  """Scores a folder of generated one-second clips with SaShiMi's SC09 protocol.

  Args:
    samples_dir: folder of audio files (16 kHz WAV expected; other rates, lengths and silence are handled and
      counted, see hrnn.metrics.clips); None scores only the reference rows.
    reference: SC09-layout dataset whose train split is the FID reference (and whose train/test rows are
      computed), prepared under `root`: "sc09-espeak" or "sc09".
    classifier: a ResNeXt, a classifier file (hrnn's or SaShiMi's resnext.pth), or None for the default file
      of `reference` (`default_classifier_path`).
    root: data root (None = hrnn.data's default).
    likelihoods: None (score every file), or per-file log-likelihoods (mapping file name -> value, or a sequence
      in natural file order) to score only the files SaShiMi's script would: the `band` of the held-out random
      half (`select_samples`; its NumPy state follows an mIS over `reference`'s test split, as in SaShiMi).
    band: (lo, hi) fractions of the held-out half's likelihood ranking kept; SaShiMi: (0.40, 0.95).
    reference_rows: also score the train and test splits (the real-data reference rows).
    torch_fidelity: also compute torch-fidelity's FID and ISC with the same classifier.
    batch_size: clips per classifier forward pass.
    device: torch device; None = "cuda" when available, else "cpu".

  Returns:
    {"reference", "classifier" (its info), "samples_dir", "sample_files", "scored", "selection" (None when every
     file is scored, else {"rule", "band", "seed", "mis_clips", "held_out"}), "clips" (per set: counts of
     resampled / padded / cut / silent clips), "rows" (set -> metric -> value, sets in ROWS order), "estimators"
     (metric -> what it is)}.
  """
  if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
    raise ScoreError(f"batch_size={batch_size!r}: need a positive number of clips per forward pass")
  if likelihoods is not None:
    band = check_band(band)
  device = device or ("cuda" if torch.cuda.is_available() else "cpu")
  model, info = resolve_classifier(classifier, reference, root)
  model = model.to(device)
  files = kept = []
  selection = None
  if samples_dir is not None:
    files = sample_files(samples_dir)
    kept = files
    if likelihoods is not None:
      mis_clips = len(load_split(reference, "test", root=root))
      kept = select_samples(files, likelihoods, band, mis_clips=mis_clips)
      selection = {"rule": SELECTION_RULE, "band": list(band), "seed": BAND_SEED, "mis_clips": mis_clips,
                   "held_out": len(files) - len(files) // 2}
    if len(kept) < MIN_SAMPLES:
      raise ClipError(f"only {len(kept)} samples to score in {samples_dir}; need at least {MIN_SAMPLES}")
  elif not reference_rows:
    raise ClipError("nothing to score: give a samples folder or ask for the reference rows")

  inputs, reports = {}, {}
  inputs["train"], _, reports["train"] = split_features(reference, "train", root)
  if reference_rows:
    inputs["test"], _, reports["test"] = split_features(reference, "test", root)
  if kept:
    inputs["samples"], reports["samples"] = clip_features(kept, desc="samples")
  outputs = {name: classifier_outputs(model, x, batch_size, device) for name, x in inputs.items()}
  scored = [name for name in ROWS if name in inputs and (reference_rows or name == "samples")]
  rows = {name: set_scores(*outputs["train"], *outputs[name]) for name in scored}

  if torch_fidelity:
    # The one import inside a function here: torch-fidelity loads only when its scores are asked for.
    from hrnn.metrics.fidelity import fidelity_scores

    with tempfile.TemporaryDirectory(prefix="hrnn-fidelity-") as tmp:
      path = save_classifier(Path(tmp) / "classifier.pt", model)
      for name in scored:  # "train" as the cache name of input2 shares its features across the rows
        tf = fidelity_scores(path, inputs[name], inputs["train"], generated_name=name, reference_name="train",
                             cache_root=tmp, batch_size=batch_size, cuda=str(device).startswith("cuda"))
        rows[name].update(fid_torch_fidelity=tf["fid"], isc_torch_fidelity=tf["isc"],
                          isc_torch_fidelity_std=tf["isc_std"])

  return {"reference": reference, "classifier": info,
          "samples_dir": None if samples_dir is None else str(samples_dir), "sample_files": len(files),
          "scored": len(kept), "selection": selection,
          "clips": {name: dataclasses.asdict(r) for name, r in reports.items()}, "rows": rows,
          "estimators": ESTIMATORS}


def predicted_digits(paths, classifier) -> list[tuple[int, float]]:
  """(digit, probability) for each audio file: the classifier's most likely digit (0..9 = zero..nine) and the
  probability it gives that digit (the notebooks' and the learning curves' listening labels)."""
  features, _ = clip_features(list(paths), desc="classifying")
  _, probs = classifier_outputs(classifier, features)
  return [(int(p.argmax()), float(p.max())) for p in probs]
