"""FID, SaShiMi's IS, mIS, AM and the likelihood band on hand-made inputs with known answers."""

import numpy as np
import pytest
import scipy.linalg

from hrnn.metrics import scores


def _onehot(labels, classes=10, confidence=1.0):
  p = np.full((len(labels), classes), (1 - confidence) / (classes - 1))
  p[np.arange(len(labels)), labels] = confidence
  return p


def test_fid_of_a_set_with_itself_is_zero_never_negative():
  for seed in range(12):  # unclamped, rounding makes about half of these -1e-12 or so
    f = np.random.default_rng(seed).normal(size=(300, 64))
    assert 0.0 <= scores.frechet_distance(f, f) < 1e-8


def test_fid_matches_the_closed_form_for_gaussians():
  rng = np.random.default_rng(1)
  d = 6
  a1, a2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = a1 @ a1.T + 0.1 * np.eye(d), a2 @ a2.T + 0.1 * np.eye(d)
  closed = (np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2)
            - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real)
  assert scores.frechet_distance_from_statistics(mu1, s1, mu2, s2) == pytest.approx(closed, rel=1e-9)
  # Sampled features converge to the same value.
  x1 = rng.multivariate_normal(mu1, s1, size=200_000)
  x2 = rng.multivariate_normal(mu2, s2, size=200_000)
  assert scores.frechet_distance(x1, x2) == pytest.approx(closed, rel=0.02)


def test_fid_of_isotropic_gaussians_is_exact():
  # N(0, I) vs N(m, 4 I) in d dims: |m|^2 + d (1 + 4 - 2 * 2) = |m|^2 + d.
  d, m = 5, np.full(5, 0.5)
  fid = scores.frechet_distance_from_statistics(np.zeros(d), np.eye(d), m, 4 * np.eye(d))
  assert fid == pytest.approx(m @ m + d, abs=1e-12)


def test_fid_stays_finite_with_fewer_samples_than_dimensions():
  rng = np.random.default_rng(2)
  fid = scores.frechet_distance(rng.normal(size=(20, 64)), rng.normal(size=(30, 64)))
  assert np.isfinite(fid) and fid > 0


def test_is_is_one_for_identical_predictions():
  p = np.tile(np.array([0.5, 0.2, 0.1, 0.1, 0.1, 0, 0, 0, 0, 0]), (100, 1))
  assert scores.inception_score(p) == pytest.approx(1.0, abs=1e-12)


def test_is_is_ten_for_confident_balanced_ten_class_predictions():
  p = _onehot(np.repeat(np.arange(10), 100))
  # SaShiMi's split is random: each half holds ~50 per class, so the second half's mean is only ~uniform.
  assert scores.inception_score(p) == pytest.approx(10.0, rel=0.02)
  # A permutation that leaves both halves exactly balanced gives exactly 10.
  perm = np.random.RandomState(0).permutation(1000)
  p_balanced = np.empty_like(p)
  p_balanced[perm] = _onehot(np.tile(np.arange(10), 100))
  assert scores.inception_score(p_balanced) == pytest.approx(10.0, rel=1e-12)


def test_is_uses_the_first_half_against_the_second_half_mean_after_seed_0_shuffle():
  rng = np.random.default_rng(3)
  p = rng.dirichlet(np.ones(10), size=11)
  q = p[np.random.RandomState(0).permutation(11)]
  mean2 = q[5:].mean(0)
  expected = np.exp(np.mean([np.sum(q[i] * np.log(q[i] / mean2)) for i in range(5)]))
  assert scores.inception_score(p) == pytest.approx(expected, rel=1e-12)


def test_mis_on_hand_made_distributions():
  # All predictions identical -> every pair has KL 0 -> mIS = 1.
  assert scores.modified_inception_score(np.tile(np.full(10, 0.1), (7, 1))) == pytest.approx(1.0)
  # Two classes, each sample sure of one of them: KL(p_a || p_b) = 0 when equal, log(1/eps)-ish when different.
  eps = 1e-3
  p = np.array([[1 - eps, eps], [eps, 1 - eps]])
  kl_diff = (1 - eps) * np.log((1 - eps) / eps) + eps * np.log(eps / (1 - eps))
  index = np.random.RandomState(0).randint(0, 2, size=(10_000, 2))
  expected = np.exp(np.mean(np.where(index[:, 0] != index[:, 1], kl_diff, 0.0)))
  assert scores.modified_inception_score(p) == pytest.approx(expected, rel=1e-12)
  # ~half of the pairs differ.
  assert np.log(expected) == pytest.approx(kl_diff / 2, rel=0.05)


def test_mis_pairs_match_sashimis_one_choice_per_pair():
  rs = np.random.RandomState(0)
  sequential = np.array([rs.choice(np.arange(37), size=2, replace=True) for _ in range(1000)])
  np.testing.assert_array_equal(sequential, np.random.RandomState(0).randint(0, 37, size=(1000, 2)))


def test_am_on_hand_made_distributions():
  confident = _onehot(np.repeat(np.arange(10), 10))
  # Same class balance and zero entropy -> AM = 0.
  assert scores.am_score(confident, confident) == pytest.approx(0.0, abs=1e-12)
  # Generated all uniform: mean is uniform (KL 0 against a balanced reference), entropy log 10.
  uniform = np.full((20, 10), 0.1)
  assert scores.am_score(confident, uniform) == pytest.approx(np.log(10))
  # Generated all confident "zero": KL(uniform || onehot-ish) + 0 entropy.
  mostly_zero = _onehot(np.zeros(30, int), confidence=0.91)
  ref_mean = np.full(10, 0.1)
  gen_mean = mostly_zero[0]
  entropy = -(0.91 * np.log(0.91) + 9 * 0.01 * np.log(0.01))
  expected = np.sum(ref_mean * np.log(ref_mean / gen_mean)) + entropy
  assert scores.am_score(confident, mostly_zero) == pytest.approx(expected, rel=1e-12)


def test_kl_is_infinite_where_q_misses_mass_of_p():
  assert scores.kl_divergence(np.array([0.5, 0.5]), np.array([1.0, 0.0])) == np.inf
  assert scores.kl_divergence(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(np.log(2))


def test_likelihood_band_keeps_the_40_to_95_percent_ranks():
  ll = np.random.default_rng(4).permutation(200).astype(float)  # ranks = values
  kept = scores.likelihood_band(ll)
  assert len(kept) == 190 - 80
  np.testing.assert_array_equal(ll[kept], np.arange(80, 190))
  with pytest.raises(ValueError, match="band"):
    scores.likelihood_band(ll, (0.9, 0.5))


def test_scores_reject_non_probabilities():
  with pytest.raises(ValueError, match="softmax"):
    scores.inception_score(np.ones((4, 10)))
  with pytest.raises(ValueError, match="shape"):
    scores.frechet_distance(np.ones(5), np.ones(5))
