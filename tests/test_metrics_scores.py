"""FID, SaShiMi's IS (and the textbook IS), mIS, AM and SaShiMi's likelihood band on hand-made inputs with known
answers, and against SaShiMi's scripts written out."""

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

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
  # Every class column is constant over the samples, so it normalises to the uniform: each KL is 0.
  p = np.tile(np.array([0.5, 0.2, 0.1, 0.1, 0.05, 0.01, 0.01, 0.01, 0.01, 0.01]), (100, 1))
  assert scores.inception_score(p) == pytest.approx(1.0, abs=1e-12)
  assert scores.inception_score_textbook(p) == pytest.approx(1.0, abs=1e-12)


def test_is_four_samples_by_hand():
  # RandomState(0).permutation(4) = [2, 3, 1, 0]: the first half A = [p_2, p_3] = [[.75, .25], [.25, .75]].
  # Column 0 of A, normalised over A's 2 samples, is [.75, .25]; its KL to [1/2, 1/2] is .75 ln 1.5 + .25 ln .5;
  # column 1 is [.25, .75], the same KL. IS = exp(that). B = [p_1, p_0] never enters.
  p = np.array([[0.5, 0.5], [0.5, 0.5], [0.75, 0.25], [0.25, 0.75]])
  kl = 0.75 * np.log(1.5) + 0.25 * np.log(0.5)  # = 0.130812
  assert scores.inception_score(p) == pytest.approx(np.exp(kl), rel=1e-12)  # 1.139754
  assert scores.inception_score(np.array([[0.5, 0.5], [0.9, 0.1], [0.75, 0.25], [0.25, 0.75]])) == pytest.approx(
      np.exp(kl), rel=1e-12)
  # The textbook IS: mean p = [1/2, 1/2]; KL(p_i || mean) = 0, 0, kl, kl.
  assert scores.inception_score_textbook(p) == pytest.approx(np.exp(kl / 2), rel=1e-12)  # 1.067592


def test_is_three_samples_as_in_the_docstring():
  # A = the one sample p_2 (permutation(3) = [2, 1, 0]): each column normalises to [1], KL 0, IS = 1 for any p.
  p = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
  assert scores.inception_score(p) == pytest.approx(1.0, abs=1e-12)
  m = p.mean(axis=0)
  textbook = np.exp(np.mean([np.sum(r * np.log(r / m)) for r in p]))
  assert textbook == pytest.approx(1.2029, abs=1e-4)
  assert scores.inception_score_textbook(p) == pytest.approx(textbook, rel=1e-12)


def test_is_on_a_collapsed_class_distribution():
  # 8 samples, each sure (a = 0.991) of class 0 or 1, e = 0.001 on each other class. permutation(8) =
  # [6, 2, 1, 7, 3, 0, 5, 4]; labels put classes 0, 0, 1, 1 in A = [p_6, p_2, p_1, p_7].
  a, e = 0.991, 0.001
  labels = [1, 1, 0, 0, 1, 0, 0, 1]
  p = np.full((8, 10), e)
  p[np.arange(8), labels] = a
  # Column 0 of A is [a, a, e, e] / (2a + 2e), column 1 the same reversed; columns 2..9 are constant (KL 0).
  s = 2 * a + 2 * e
  kl01 = 2 * (a / s) * np.log(4 * a / s) + 2 * (e / s) * np.log(4 * e / s)
  sashimi = np.exp(2 * kl01 / 10)
  assert scores.inception_score(p) == pytest.approx(sashimi, rel=1e-12)
  assert sashimi == pytest.approx(1.1469, abs=1e-4)
  # The textbook IS of the same set: mean p = [(a + e) / 2, (a + e) / 2, e, ...]; every sample has the same KL.
  m = (a + e) / 2
  textbook = np.exp(a * np.log(a / m) + e * np.log(e / m))
  assert scores.inception_score_textbook(p) == pytest.approx(textbook, rel=1e-12)
  assert textbook == pytest.approx(1.9733, abs=1e-4)  # the two estimators differ widely on collapsed sets


def test_is_is_nan_where_a_class_has_no_mass_in_a_half_as_scipy_gives():
  p = np.tile(np.array([0.5, 0.5, 0.0]), (6, 1))  # class 2 never predicted: scipy normalises 0 / 0
  assert np.isnan(scores.inception_score(p))


def test_is_of_confident_balanced_ten_class_predictions():
  p = _onehot(np.repeat(np.arange(10), 100))
  # IS = (N/2) exp(-mean_c H(column c of A)); a one-hot column c spreads uniformly over the n_c samples of class c
  # in A, H = ln n_c: IS = 500 / geometric mean of the n_c.
  first = np.random.RandomState(0).permutation(1000)[:500]
  counts = np.bincount(np.repeat(np.arange(10), 100)[first], minlength=10)
  assert scores.inception_score(p) == pytest.approx(500 / np.exp(np.log(counts).mean()), rel=1e-12)
  # A permutation that puts exactly 50 of each class in A gives exactly 10.
  perm = np.random.RandomState(0).permutation(1000)
  p_balanced = np.empty_like(p)
  p_balanced[perm] = _onehot(np.tile(np.arange(10), 100))
  assert scores.inception_score(p_balanced) == pytest.approx(10.0, rel=1e-12)
  assert scores.inception_score_textbook(p) == pytest.approx(10.0, rel=1e-12)  # KL(onehot || uniform) = ln 10


@pytest.mark.parametrize("n", [2, 7, 100, 1001])
def test_is_equals_sashimis_scipy_call(n):
  """SaShiMi's code, written out: seed-0 shuffle, halves, scipy.stats.entropy with its default axis 0."""
  p = np.random.default_rng(n).dirichlet(np.full(10, 0.3), size=n)
  q = p[np.random.RandomState(0).permutation(n)]
  first, second = q[:n // 2], q[n // 2:]
  expected = np.exp(scipy.stats.entropy(first, np.repeat(second.mean(axis=0)[None, :], len(first), axis=0)).mean())
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


def _sashimi_band(ll, mis_clips, lo=0.4, hi=0.95):
  """SaShiMi's scripts, written out: samples saved in increasing likelihood (natsorted), global NumPy seeded 0 by
  its mIS, 10,000 choice(n, 2) draws, the tuning half choice(N, N // 2, replace=False), the rest held out."""
  order = np.argsort(ll)  # file k holds the sample of rank k
  state = np.random.RandomState(0)
  for _ in range(10_000):
    state.choice(np.arange(mis_clips), size=2, replace=True)
  n_val = n_test = len(ll) // 2
  val = sorted(state.choice(len(ll), size=n_val, replace=False))
  test = sorted(set(range(len(ll))) - set(val))
  return order[test[int(lo * n_test):int(hi * n_test)]]


def test_likelihood_band_of_1000_samples_as_sashimi_selects():
  ll = np.random.default_rng(4).normal(-20_000, 500, 1000)
  kept = scores.likelihood_band(ll, mis_clips=407)
  # 500 held out; positions int(0.4 * 500) = 200 .. int(0.95 * 500) = 475: 275 clips.
  assert len(kept) == 275
  np.testing.assert_array_equal(kept, _sashimi_band(ll, 407))
  assert (np.diff(ll[kept]) > 0).all()  # increasing likelihood
  np.testing.assert_array_equal(scores.likelihood_band(ll, mis_clips=407), kept)  # reproducible
  assert set(scores.likelihood_band(ll, mis_clips=408)) != set(kept)  # the mIS draws move the state
  np.testing.assert_array_equal(scores.likelihood_band(ll, (0.1, 0.3), mis_clips=407),
                                _sashimi_band(ll, 407, 0.1, 0.3))
  held = scores.held_out_half(1000, 407)
  assert len(held) == 500 and set(ll.argsort()[held[200:475]]) == set(kept)


def test_likelihood_band_of_10240_samples_keeps_2816():
  ll = np.random.default_rng(5).permutation(10_240).astype(float)
  assert len(scores.likelihood_band(ll, mis_clips=4107)) == int(0.95 * 5120) - int(0.40 * 5120) == 2816


def test_likelihood_band_bad_input_names_the_value():
  ll = np.arange(10.0)
  for band in [(0.9, 0.5), (-0.1, 0.5), (0.5, 1.2), (float("nan"), 0.9)]:
    with pytest.raises(scores.ScoreError, match=r"likelihood band \(.*\): need 0 <= LO < HI <= 1"):
      scores.likelihood_band(ll, band, mis_clips=10)
  with pytest.raises(scores.ScoreError, match=r"likelihood band \(0.4, 0.95\) of the held-out half \(2 of 3 "
                     "samples\) keeps no clip"):
    scores.likelihood_band(np.arange(3.0), mis_clips=10)  # int(0.4 * 1) = int(0.95 * 1) = 0
  with pytest.raises(scores.ScoreError, match=r"log_likelihoods\[3\] is NaN \(2 NaN values\)"):
    scores.likelihood_band([0.0, 1.0, 2.0, np.nan, np.nan, 5.0], mis_clips=10)


def test_scores_reject_bad_probabilities_naming_the_value():
  good = np.full((4, 10), 0.1)
  cases = {
      "NaN": (r"probs\[2, 3\] is NaN \(1 NaN values\)", (2, 3, np.nan)),
      "negative": (r"probs\[1, 0\] = -0.05 is negative", (1, 0, -0.05)),
      "sum": (r"probs row 3 sums to 1.0002 \(1 rows off\); every row must sum to 1 within 0.0001", (3, 4, 0.1002)),
  }
  for pattern, (i, c, value) in cases.values():
    p = good.copy()
    p[i, c] = value
    for estimator in (scores.inception_score, scores.inception_score_textbook, scores.modified_inception_score):
      with pytest.raises(scores.ScoreError, match=pattern):
        estimator(p)
  off = good.copy()
  off[3, 4] = 0.1002
  with pytest.raises(scores.ScoreError, match=r"probs_generated row 3 sums to 1.0002"):
    scores.am_score(good, off)
  with pytest.raises(scores.ScoreError, match=r"probs_reference row 3 sums to 1.0002"):
    scores.am_score(off, good)
  within = good.copy()
  within[0, 0] += 5e-5  # within the 1e-4 tolerance
  assert np.isfinite(scores.inception_score(within))
  for estimator in (scores.inception_score, scores.inception_score_textbook):
    with pytest.raises(scores.ScoreError, match=r"probs: IS needs class probabilities of shape \[N >= 2, C\], got "
                       r"shape \(1, 10\)"):
      estimator(good[:1])
  with pytest.raises(ValueError, match="shape"):
    scores.frechet_distance(np.ones(5), np.ones(5))
