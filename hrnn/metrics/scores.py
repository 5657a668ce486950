"""Sample-quality scores on classifier outputs, exactly as SaShiMi's released evaluation script computes them
(hrnn.metrics.protocol). numpy/scipy only.

Inputs are the classifier's penultimate features f [N, D] and class probabilities p [N, C] (rows sum to 1).
KL(p || q) = sum_c p_c log(p_c / q_c), in nats, with 0 log 0 = 0; H(p) = -sum_c p_c log p_c.

  FID  = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))      Frechet distance of two Gaussians fitted to f
  IS   = exp(mean_c KL(column c of A, normalised over A's samples   SaShiMi's IS (`inception_score`): A = the first
                       || uniform over A's samples))                half of a seed-0 shuffle; see its docstring
  IS_textbook = exp(mean_i KL(p_i || mean_j p_j))                   Salimans et al.'s IS (`inception_score_textbook`)
  mIS  = exp(mean_k KL(p_{a_k} || p_{b_k}))                         10,000 index pairs drawn with replacement (seed 0)
  AM   = KL(mean p_ref || mean p_gen) + mean_i H(p_gen_i)

Every published SC09 IS (SaShiMi, Mamba, HarmonicRNN) is SaShiMi's IS. torch-fidelity's ISC (mean of 10 per-split
scores on logits) is a third estimator; see `hrnn.metrics.fidelity`.

`likelihood_band` selects the samples SaShiMi scores when it has their likelihoods: a seeded random half is set
aside, and the 40%..95% band of the other, held-out half is kept (10,240 samples -> 2,816 clips).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import scipy.special

from hrnn.errors import HrnnError

IS_SEED = 0
MIS_SEED = 0
MIS_PAIRS = 10_000
LIKELIHOOD_BAND = (0.40, 0.95)
BAND_SEED = 0  # SaShiMi's script seeds NumPy with 0 in its mIS, the last draws before its random half
ROW_SUM_TOLERANCE = 1e-4


class ScoreError(HrnnError, ValueError):
  """Unusable input to an estimator or to the likelihood band; the message names the input and its value."""


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
  """KL(p || q) along the last axis, in nats: [..., C] x [..., C] -> [...]. Inputs are renormalised to sum 1."""
  p = np.asarray(p, np.float64)
  q = np.asarray(q, np.float64)
  p = p / p.sum(axis=-1, keepdims=True)
  q = q / q.sum(axis=-1, keepdims=True)
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
  return terms.sum(axis=-1)


def entropy(p: np.ndarray) -> np.ndarray:
  """H(p) along the last axis, in nats: [..., C] -> [...]."""
  p = np.asarray(p, np.float64)
  p = p / p.sum(axis=-1, keepdims=True)
  with np.errstate(divide="ignore", invalid="ignore"):
    return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean [D] and unbiased covariance [D, D] of features [N, D] (N >= 2)."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise ScoreError(f"features: FID needs features of shape [N >= 2, D], got shape {features.shape}")
  return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance_from_statistics(mu1, sigma1, mu2, sigma2) -> float:
  """|mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2)).

  tr((S1 S2)^(1/2)) is computed as sum_k sqrt(lambda_k) over the eigenvalues of the symmetric PSD matrix
  S1^(1/2) S2 S1^(1/2), which has the same spectrum as S1 S2; this stays real and finite when S1 or S2 is singular
  (fewer samples than feature dimensions), unlike a general matrix square root.
  """
  mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
  sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
  root1 = _psd_sqrt(sigma1)
  eigenvalues = np.linalg.eigvalsh(root1 @ sigma2 @ root1)
  tr_covmean = np.sqrt(np.clip(eigenvalues, 0.0, None)).sum()
  diff = mu1 - mu2
  # A squared distance: rounding leaves tiny negatives (-1e-11) when a set is scored against itself.
  return max(0.0, float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean))


def frechet_distance(features1: np.ndarray, features2: np.ndarray) -> float:
  """FID between two feature sets [N1, D] and [N2, D] (see `frechet_distance_from_statistics`)."""
  return frechet_distance_from_statistics(*gaussian_statistics(features1), *gaussian_statistics(features2))


def inception_score(probs: np.ndarray, seed: int = IS_SEED) -> float:
  """SaShiMi's IS, exactly as its released script computes it (the IS of every published SC09 table).

  The script shuffles with NumPy seed `seed`, splits into halves A (the first N // 2) and B, and calls
  `scipy.stats.entropy(A, repeat(mean(B), N // 2))` on [N // 2, C] arrays without `axis`, so scipy's default
  axis 0 applies: every class *column* of A is normalised over the samples, and the repeated mean, normalised the
  same way, is the uniform distribution over the N // 2 samples. With a_ic = A_ic / sum_j A_jc:

    IS = exp( (1/C) sum_c sum_i a_ic log(a_ic / (1 / (N//2))) ) = (N // 2) exp(-(1/C) sum_c H(a_.c))

  B never enters the number (except that a class with zero total probability in A or in B makes scipy's value,
  and this one, NaN). IS is 1 when every sample predicts the same distribution, N // 2 when each class's mass sits
  on one sample of A; ~10 for confident predictions balanced over 10 classes (each column spread over ~1/10 of A).
  It is not the textbook IS (`inception_score_textbook`): on collapsed or unconfident sets the two differ widely.

  Worked example, N = 3 samples, C = 2 classes: p = [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]].
    The seed-0 shuffle is [2, 1, 0]: A = [[0.6, 0.4]] (N // 2 = 1 sample), B = [[0.2, 0.8], [0.9, 0.1]].
    Column 0 of A normalised over its one sample is [1], and so is column 1; the uniform over one sample is [1].
    KL = 1 log(1 / 1) = 0 for both columns: IS = exp(0) = 1, whatever the 3 probabilities are.
    (The textbook IS of the same samples: mean p = [0.5667, 0.4333], KL(p_i || mean p) = 0.2697, 0.2822, 0.0023,
    IS_textbook = exp(0.1847) = 1.2029.)
  With N = 6 the seed-0 shuffle is [5, 2, 1, 3, 0, 4]; if it puts A = [[1, 0], [1, 0], [0, 1]] first (B anything
  with mass in both classes): column 0 normalises to [1/2, 1/2, 0], KL to [1/3, 1/3, 1/3] = log 1.5; column 1 to
  [0, 0, 1], KL = log 3; IS = exp((log 1.5 + log 3) / 2) = sqrt(4.5) = 2.1213 = 3 exp(-(log 2 + 0) / 2).

  Args:
    probs: [N, C] class probabilities, N >= 2, rows summing to 1.
    seed: the shuffle's NumPy seed (SaShiMi: 0).
  Returns:
    the score, computed in float64 (SaShiMi's runs on its float32 probabilities: agreement to ~1e-6 relative).
  """
  probs = _check_probs(probs, "probs", minimum=2, purpose="IS")
  shuffled = probs[np.random.RandomState(seed).permutation(len(probs))]
  half = len(probs) // 2
  first, second = shuffled[:half], shuffled[half:]
  mass = first.sum(axis=0)
  if (mass == 0).any() or (second.sum(axis=0) == 0).any():
    return math.nan  # scipy divides 0 by 0 for that column
  columns = first / mass  # [half, C], each column a distribution over A's samples
  return float(np.exp(scipy.special.rel_entr(columns, 1.0 / half).sum(axis=0).mean()))


def inception_score_textbook(probs: np.ndarray) -> float:
  """The textbook IS (Salimans et al. 2016, one split): exp(mean_i KL(p_i || mean_j p_j)) over all N samples.

  Not the IS that published SC09 tables report (that is `inception_score`); shown only under its own name.

  Args:
    probs: [N, C] class probabilities, N >= 2, rows summing to 1.
  """
  probs = _check_probs(probs, "probs", minimum=2, purpose="IS")
  return float(np.exp(kl_divergence(probs, probs.mean(axis=0)).mean()))


def modified_inception_score(probs: np.ndarray, pairs: int = MIS_PAIRS, seed: int = MIS_SEED) -> float:
  """mIS: exp(mean KL(p_a || p_b)) over `pairs` index pairs (a, b) drawn uniformly with replacement.

  The pairs are RandomState(seed).randint(0, N, [pairs, 2]), the same stream as SaShiMi's one
  `choice(N, 2, replace=True)` call per pair.
  """
  probs = _check_probs(probs, "probs", minimum=1, purpose="mIS")
  index = np.random.RandomState(seed).randint(0, len(probs), size=(pairs, 2))
  return float(np.exp(kl_divergence(probs[index[:, 0]], probs[index[:, 1]]).mean()))


def am_score(probs_reference: np.ndarray, probs_generated: np.ndarray) -> float:
  """AM = KL(mean p_reference || mean p_generated) + mean_i H(p_generated_i); lower is better."""
  reference = _check_probs(probs_reference, "probs_reference", minimum=1, purpose="AM")
  generated = _check_probs(probs_generated, "probs_generated", minimum=1, purpose="AM")
  return float(kl_divergence(reference.mean(axis=0), generated.mean(axis=0)) + entropy(generated).mean())


def held_out_half(n: int, mis_clips: int, seed: int = BAND_SEED, pairs: int = MIS_PAIRS) -> np.ndarray:
  """The likelihood ranks SaShiMi scores from: the half of range(n) its script holds out, sorted.

  SaShiMi's script draws the half it sets aside from NumPy's global state right after its last mIS, that of its
  reference test split: seeded with `seed`, then advanced by `pairs` draws of 2 indices in range(mis_clips). The
  set-aside half is `choice(n, n // 2, replace=False)` (= `permutation(n)[:n // 2]`); the other n - n // 2 ranks
  are held out.

  Args:
    n: number of samples (SaShiMi: 10,240).
    mis_clips: clips in the set whose mIS the script computes last (its reference test split).
  Returns:
    int [n - n // 2] ranks, increasing.
  """
  state = np.random.RandomState(seed)
  state.randint(0, mis_clips, size=(pairs, 2))  # the mIS pairs (one `choice(mis_clips, 2)` each: same stream)
  set_aside = state.permutation(n)[:n // 2]
  held = np.ones(n, bool)
  held[set_aside] = False
  return np.flatnonzero(held)


def likelihood_band(log_likelihoods, band: tuple[float, float] = LIKELIHOOD_BAND, *, mis_clips: int,
                    seed: int = BAND_SEED) -> np.ndarray:
  """The samples SaShiMi scores: the `band` of the held-out half of the likelihood ranking.

  Its generation script saves samples sorted by likelihood (lowest first) and its scoring script keeps positions
  int(lo m) .. int(hi m) - 1 of the held-out half (`held_out_half`), m = n // 2. The 40%..95% default drops the
  least likely 40% and the most likely 5% (often silent or repetitive) of a random half: 10,240 -> 2,816.

  Args:
    log_likelihoods: [n] one per sample (finite).
    band: (lo, hi) fractions, 0 <= lo < hi <= 1.
    mis_clips, seed: the NumPy state of the random half (`held_out_half`).
  Returns:
    int [K] indices into `log_likelihoods`, in increasing likelihood order.
  """
  lo, hi = check_band(band)
  values = np.asarray(log_likelihoods, np.float64)
  if values.ndim != 1:
    raise ScoreError(f"log_likelihoods: need one value per sample, got shape {values.shape}")
  bad = np.flatnonzero(np.isnan(values))
  if len(bad):
    raise ScoreError(f"log_likelihoods[{bad[0]}] is NaN ({len(bad)} NaN values); give a log-likelihood per sample")
  if mis_clips < 1:
    raise ScoreError(f"mis_clips={mis_clips}: SaShiMi's random half follows an mIS over at least 1 clip")
  n = len(values)
  ranks = held_out_half(n, mis_clips, seed)
  kept = ranks[int(lo * (n // 2)):int(hi * (n // 2))]
  if not len(kept):
    raise ScoreError(f"likelihood band ({lo:g}, {hi:g}) of the held-out half ({len(ranks)} of {n} samples) "
                     "keeps no clip; widen the band or score more samples")
  return np.argsort(values, kind="stable")[kept]


def check_band(band) -> tuple[float, float]:
  """(lo, hi) as floats if 0 <= lo < hi <= 1, else ScoreError naming the band."""
  try:
    lo, hi = (float(v) for v in band)
  except (TypeError, ValueError):
    raise ScoreError(f"likelihood band {band!r}: need two fractions LO HI with 0 <= LO < HI <= 1") from None
  if not 0.0 <= lo < hi <= 1.0:  # False for NaN too
    raise ScoreError(f"likelihood band ({lo:g}, {hi:g}): need 0 <= LO < HI <= 1 (fractions of the ranking)")
  return lo, hi


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
  """Symmetric square root of a positive semi-definite matrix (tiny negative eigenvalues from rounding -> 0)."""
  eigenvalues, vectors = scipy.linalg.eigh(sigma)
  return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def _check_probs(probs, name: str, minimum: int, purpose: str) -> np.ndarray:
  """probs as float64 [N, C] if N >= minimum and every row is a distribution; else ScoreError naming the value."""
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2 or len(probs) < minimum:
    raise ScoreError(f"{name}: {purpose} needs class probabilities of shape [N >= {minimum}, C], got shape "
                     f"{probs.shape}")
  nan = np.argwhere(np.isnan(probs))
  if len(nan):
    raise ScoreError(f"{name}[{nan[0][0]}, {nan[0][1]}] is NaN ({len(nan)} NaN values); check the classifier's "
                     "input")
  negative = np.argwhere(probs < 0)
  if len(negative):
    i, c = negative[0]
    raise ScoreError(f"{name}[{i}, {c}] = {probs[i, c]:g} is negative; probabilities must be >= 0 (apply softmax "
                     "to logits)")
  sums = probs.sum(axis=1)
  off = np.flatnonzero(~(np.abs(sums - 1.0) <= ROW_SUM_TOLERANCE))  # inf sums too
  if len(off):
    raise ScoreError(f"{name} row {off[0]} sums to {sums[off[0]]:.6g} ({len(off)} rows off); every row must sum "
                     f"to 1 within {ROW_SUM_TOLERANCE:g} (apply softmax to logits)")
  return probs
