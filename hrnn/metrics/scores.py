"""Sample-quality scores on classifier outputs, as SaShiMi computes them (reference.md section 4). numpy/scipy only.

Inputs are the classifier's penultimate features f [N, D] and class probabilities p [N, C] (rows sum to 1).
KL(p || q) = sum_c p_c log(p_c / q_c), in nats, with 0 log 0 = 0; H(p) = -sum_c p_c log p_c.

  FID  = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))          Frechet distance of two Gaussians fitted to f
  IS   = exp(mean_{i in A} KL(p_i || mean_{j in B} p_j))               SaShiMi's variant: shuffle with seed 0, A the
                                                                       first half, B the second half
  mIS  = exp(mean_k KL(p_{a_k} || p_{b_k}))                            10,000 index pairs drawn with replacement
                                                                       (seed 0)
  AM   = KL(mean p_ref || mean p_gen) + mean_i H(p_gen_i)

torch-fidelity's ISC (mean of 10 per-split scores on logits) is a different estimator; see `hrnn.metrics.fidelity`.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

IS_SEED = 0
MIS_SEED = 0
MIS_PAIRS = 10_000
LIKELIHOOD_BAND = (0.40, 0.95)


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
    raise ValueError(f"need features of shape [N >= 2, D], got {features.shape}")
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
  """SaShiMi's IS: exp(mean_{i in first half} KL(p_i || mean of the second half)) after a seeded shuffle.

  Args:
    probs: [N, C] class probabilities, N >= 2.
    seed: the shuffle's numpy RandomState seed (SaShiMi: 0).
  """
  probs = _check_probs(probs, minimum=2)
  shuffled = probs[np.random.RandomState(seed).permutation(len(probs))]
  half = len(shuffled) // 2
  return float(np.exp(kl_divergence(shuffled[:half], shuffled[half:].mean(axis=0)).mean()))


def modified_inception_score(probs: np.ndarray, pairs: int = MIS_PAIRS, seed: int = MIS_SEED) -> float:
  """mIS: exp(mean KL(p_a || p_b)) over `pairs` index pairs (a, b) drawn uniformly with replacement.

  The pairs are RandomState(seed).randint(0, N, [pairs, 2]), the same stream as SaShiMi's one
  `choice(N, 2, replace=True)` call per pair.
  """
  probs = _check_probs(probs, minimum=1)
  index = np.random.RandomState(seed).randint(0, len(probs), size=(pairs, 2))
  return float(np.exp(kl_divergence(probs[index[:, 0]], probs[index[:, 1]]).mean()))


def am_score(probs_reference: np.ndarray, probs_generated: np.ndarray) -> float:
  """AM = KL(mean p_reference || mean p_generated) + mean_i H(p_generated_i); lower is better."""
  reference = _check_probs(probs_reference, minimum=1)
  generated = _check_probs(probs_generated, minimum=1)
  return float(kl_divergence(reference.mean(axis=0), generated.mean(axis=0)) + entropy(generated).mean())


def likelihood_band(log_likelihoods: np.ndarray, band: tuple[float, float] = LIKELIHOOD_BAND) -> np.ndarray:
  """Indices of the samples SaShiMi keeps: sorted by likelihood (lowest first), the [lo, hi) fraction band.

  With N samples the kept ranks are int(lo N) .. int(hi N) - 1: the default drops the 40% least likely samples
  and the 5% most likely ones (often silent or repetitive).

  Returns:
    int [K] indices into `log_likelihoods`, in increasing likelihood order.
  """
  lo, hi = band
  if not 0.0 <= lo < hi <= 1.0:
    raise ValueError(f"likelihood band must satisfy 0 <= lo < hi <= 1, got {band}")
  log_likelihoods = np.asarray(log_likelihoods, np.float64)
  order = np.argsort(log_likelihoods, kind="stable")
  n = len(order)
  return order[int(lo * n):int(hi * n)]


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
  """Symmetric square root of a positive semi-definite matrix (tiny negative eigenvalues from rounding -> 0)."""
  eigenvalues, vectors = scipy.linalg.eigh(sigma)
  return (vectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ vectors.T


def _check_probs(probs: np.ndarray, minimum: int) -> np.ndarray:
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2 or len(probs) < minimum:
    raise ValueError(f"need class probabilities of shape [N >= {minimum}, C], got {probs.shape}")
  if (probs < 0).any() or not np.allclose(probs.sum(axis=1), 1.0, atol=1e-4):
    raise ValueError("class probabilities must be non-negative rows summing to 1 (apply softmax to logits)")
  return probs
