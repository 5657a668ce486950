"""SC09 sample-quality metrics exactly as SaShiMi's released script computes them: FID, IS, mIS, AM.

  score(samples_dir, reference="sc09-espeak", classifier=None, ...) -> dict    every number, labelled
  train_classifier(dataset, size, ...) -> (model, info)                       the ResNeXt digit classifier
  load_classifier(path) -> (model, info)                                      hrnn's file or SaShiMi's resnext.pth
  classifier_fingerprint(model) -> str                                        which classifier (12 hex of SHA-256)
  frechet_distance, inception_score, modified_inception_score, am_score       the estimators, on arrays
  inception_score_textbook                                                    the textbook IS (not SaShiMi's)
  likelihood_band(log_likelihoods, band, mis_clips=...)                       the samples SaShiMi scores
  log_mel(waves)                                                              the classifier's 32x32 input
  predicted_digits(paths, classifier) -> [(digit, probability)]               the digit the classifier hears
"""

from hrnn.metrics.classifier import (CLASSIFIER_SIZES, SASHIMI_PICKLE, SASHIMI_PICKLE_CLASSES, ClassifierConfig,
                                     ClassifierError, PickledModule, ResNeXt, SashimiUnpickler, classifier_config,
                                     classifier_fingerprint, classifier_outputs, default_size, load_classifier,
                                     save_classifier)
from hrnn.metrics.clips import ClipError, ClipReport, clip_features, read_clips, sample_files, split_features
from hrnn.metrics.features import fix_length, log_mel
from hrnn.metrics.protocol import ESTIMATORS, ROWS, default_classifier_path, predicted_digits, score, select_samples
from hrnn.metrics.scores import (LIKELIHOOD_BAND, ScoreError, am_score, frechet_distance,
                                 frechet_distance_from_statistics, held_out_half, inception_score,
                                 inception_score_textbook, likelihood_band, modified_inception_score)
from hrnn.metrics.training import TrainSettings, train_classifier

__all__ = [
    "CLASSIFIER_SIZES", "ESTIMATORS", "LIKELIHOOD_BAND", "ROWS", "SASHIMI_PICKLE", "SASHIMI_PICKLE_CLASSES",
    "ClassifierConfig", "ClassifierError", "ClipError", "ClipReport", "PickledModule", "ResNeXt",
    "SashimiUnpickler", "ScoreError", "TrainSettings", "am_score", "classifier_config", "classifier_fingerprint",
    "classifier_outputs", "clip_features", "default_classifier_path", "default_size", "fix_length", "frechet_distance",
    "frechet_distance_from_statistics", "held_out_half", "inception_score", "inception_score_textbook",
    "likelihood_band", "load_classifier", "log_mel", "modified_inception_score", "predicted_digits", "read_clips",
    "sample_files", "save_classifier", "score", "select_samples", "split_features", "train_classifier",
]
