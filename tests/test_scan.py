"""hrnn.ops.scan: every backend against a float64 sequential reference (values and gradients), context parallelism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from jax.sharding import NamedSharding, PartitionSpec as P

from hrnn.ops import native
from hrnn.ops import scan
from hrnn.errors import HrnnError
from hrnn.ops.platforms import PlatformError

SHORT = (1, 2, 159, 160, 161)
LONG = 16_000


def random_inputs(rng, batch, length, channels, *, dtype=np.complex64, near_one=False):
  """(a, b, h0, dh, dh_last): |a| in [0.5, 1) (or within 1e-6 of 1), random phases, normal b, h0, cotangents."""
  shape = (batch, length, channels)
  radius = 1 - rng.uniform(0, 1e-6, shape) if near_one else rng.uniform(0.5, 1.0, shape)
  normal = lambda *s: rng.normal(size=s) + (1j * rng.normal(size=s) if dtype == np.complex64 else 0)
  a = radius * (np.exp(1j * rng.uniform(-np.pi, np.pi, shape)) if dtype == np.complex64 else 1)
  return tuple(x.astype(dtype) for x in (a, normal(*shape), normal(batch, channels), normal(*shape),
                                         normal(batch, channels)))


def reference(a, b, h0):
  """float64 sequential h_t = a_t h_{t-1} + b_t."""
  a, b, h = (np.asarray(x, np.complex128) for x in (a, b, h0))
  out = np.empty_like(b)
  for t in range(a.shape[1]):
    h = a[:, t] * h + b[:, t]
    out[:, t] = h
  return out


def reference_grads(a, b, h0, dh, dh_last):
  """float64 cotangents (da, db, dh0) in JAX's convention (the cotangent of z is dL/dRe z - i dL/dIm z):
  g_t = dh_t + a_{t+1} g_{t+1} from g_{T-1} = dh_{T-1} + dh_last, da_t = g_t h_{t-1}, db_t = g_t, dh0 = a_0 g_0."""
  h = reference(a, b, h0)
  a, h0, dh = (np.asarray(x, np.complex128) for x in (a, h0, dh))
  g = np.empty_like(dh)
  carry = np.asarray(dh_last, np.complex128)
  for t in range(a.shape[1] - 1, -1, -1):
    g[:, t] = dh[:, t] + carry
    carry = a[:, t] * g[:, t]
  h_prev = np.concatenate([h0[:, None], h[:, :-1]], axis=1)
  return g * h_prev, g, carry


def rel_err(x, ref):
  x, ref = np.asarray(x), np.asarray(ref)
  assert np.all(np.isfinite(x))
  return np.max(np.abs(x - ref)) / np.max(np.abs(ref))


def run(backend, a, b, h0, dh, dh_last):
  """Values (h, h_last) and cotangents (da, db, dh0) of linear_recurrence through one jitted vjp."""

  @jax.jit
  def f(a, b, h0, dh, dh_last):
    out, vjp = jax.vjp(lambda a, b, h0: scan.linear_recurrence(a, b, h0, backend=backend), a, b, h0)
    return out, vjp((dh, dh_last))

  return f(a, b, h0, dh, dh_last)


def check(backend, inputs, tol):
  a, b, h0, dh, dh_last = inputs
  (h, h_last), grads = run(backend, *inputs)
  ref = reference(a, b, h0)
  assert h.shape == a.shape and h.dtype == a.dtype
  assert rel_err(h, ref) < tol and rel_err(h_last, ref[:, -1]) < tol
  for got, want in zip(grads, reference_grads(*inputs)):
    assert got.dtype == a.dtype and rel_err(got, want) < tol


def test_reference_gradients_follow_jax_convention():
  # The float64 reference against central differences of the real loss L = Re sum(dh h) + Re sum(dh_last h_last):
  # JAX's cotangent of a complex z is dL/dRe z - i dL/dIm z.
  rng = np.random.default_rng(0)
  a, b, h0, dh, dh_last = (x.astype(np.complex128) for x in random_inputs(rng, 1, 4, 2))

  def loss(a, b, h0):
    h = reference(a, b, h0)
    return np.real(np.sum(dh * h) + np.sum(dh_last * h[:, -1]))

  grads = reference_grads(a, b, h0, dh, dh_last)
  eps = 1e-6
  for i, (x, grad) in enumerate(zip((a, b, h0), grads)):
    for index in np.ndindex(x.shape):
      partial = []
      for step in (eps, 1j * eps):
        up, down = [list((a, b, h0)) for _ in range(2)]
        up[i], down[i] = x.copy(), x.copy()
        up[i][index] += step
        down[i][index] -= step
        partial.append((loss(*up) - loss(*down)) / (2 * eps))
      np.testing.assert_allclose(grad[index], partial[0] - 1j * partial[1], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("backend", scan.BACKENDS)
@pytest.mark.parametrize("length", SHORT)
def test_matches_reference_complex(backend, length):
  check(backend, random_inputs(np.random.default_rng(length), 2, length, 3), tol=2e-6)


@pytest.mark.parametrize("backend", scan.BACKENDS)
def test_matches_reference_real(backend):
  check(backend, random_inputs(np.random.default_rng(1), 2, 161, 3, dtype=np.float32), tol=2e-6)


@pytest.mark.parametrize("backend", scan.BACKENDS)
def test_matches_reference_near_one(backend):
  # |a| within 1e-6 of 1 over 16,000 steps: nothing decays, float32 rounding accumulates over the whole length.
  check(backend, random_inputs(np.random.default_rng(2), 2, LONG, 3, near_one=True), tol=5e-5)


@pytest.mark.parametrize("length", SHORT)
def test_xla_loop_matches_reference(monkeypatch, length):
  # The chunked backend without the native kernels: its XLA loop (the fallback on CPU), complex and real.
  monkeypatch.setenv("HRNN_NATIVE", "0")
  check("chunked", random_inputs(np.random.default_rng(length), 2, length, 3), tol=2e-6)
  check("chunked", random_inputs(np.random.default_rng(length), 2, length, 3, dtype=np.float32), tol=2e-6)


def test_native_kernels_run_on_cpu(monkeypatch):
  # On CPU the chunked backend's forward and backward passes are the native kernels' FFI calls (one each), and
  # HRNN_NATIVE=0 turns them off.
  a = jnp.ones((2, 16, 3), jnp.complex64)

  def program():  # traced anew on each call
    loss = lambda a: jnp.sum(jnp.abs(scan.linear_recurrence(a, a, backend="chunked")[0]))
    return jax.jit(jax.grad(loss)).lower(a).as_text()

  assert native.available()
  text = program()
  assert text.count("custom_call @hrnn_scan_c64(") == 1 and text.count("custom_call @hrnn_scan_grad_c64(") == 1
  monkeypatch.setenv("HRNN_NATIVE", "0")
  assert not native.available() and "hrnn_scan" not in program()
  with pytest.raises(TypeError, match="complex64 and float32"):
    native.scan(a.real.astype(jnp.bfloat16), a.real.astype(jnp.bfloat16), jnp.zeros((2, 3), jnp.bfloat16))


@pytest.mark.parametrize("reverse", [False, True])
def test_associative_kernel_matches_reference(reverse):
  # The GPU default's kernel (run on GPUs under the custom VJP), both directions, from an initial carry.
  from test_pallas import reference

  a, b, s0, _, _ = random_inputs(np.random.default_rng(5), 2, 37, 3)
  want, want_final = reference(a, b, s0, reverse)
  states, final = jax.jit(lambda a, b, s0: scan.associative_kernel(a, b, s0, reverse=reverse))(a, b, s0)
  assert rel_err(states, want) < 2e-6 and rel_err(final, want_final) < 2e-6


def test_native_kernels_refuse_other_platforms():
  # Lowered for TPU or CUDA, the native CPU kernels stop with one error that names them and the alternatives.
  a = jax.ShapeDtypeStruct((1, 16, 3), jnp.complex64)
  s0 = jax.ShapeDtypeStruct((1, 3), jnp.complex64)
  for platform in ("tpu", "cuda"):
    with pytest.raises(PlatformError, match=f"native CPU scan kernels .* cannot run on platform {platform}; "
                                            "use scan backend 'chunked'"):
      jax.jit(native.scan).trace(a, a, s0).lower(lowering_platforms=(platform,))


def test_native_build_is_cached_and_reports_errors(tmp_path):
  # The library is built once per key (a second build is the same file) and a failing compiler is an error that
  # names it (hrnn.ops.native turns that into one warning and the XLA loop).
  cxx = native.compiler()
  path = native.build(cxx, tmp_path)
  assert path.exists() and native.build(cxx, tmp_path) == path and len(list(tmp_path.iterdir())) == 1
  with pytest.raises(native.NativeBuildError, match="false failed to build"):
    native.build("false", tmp_path / "broken")


def test_chunks_match_reference(monkeypatch):
  # The multi-chunk path of the chunked kernel (the GPU/TPU layout) on lengths that do and do not split evenly.
  monkeypatch.setenv("HRNN_NATIVE", "0")
  monkeypatch.setitem(scan.STEP_ELEMENTS, jax.default_backend(), 64)
  for length in (9, 157, 160):  # 157 is prime: padded to 10 chunks of 16
    assert scan.chunk_layout(2, length, 3)[0] > 1
    check("chunked", random_inputs(np.random.default_rng(length), 2, length, 3), tol=2e-6)


def test_million_steps_stay_finite():
  # 2^20 steps with |a| = 1 - 1e-6 (an IIR filter per channel: scipy's lfilter is the float64 reference).
  length, rng = 2**20, np.random.default_rng(3)
  decay = (1 - 1e-6) * np.exp(1j * np.array([0.0, 0.01]))
  a = np.broadcast_to(decay, (1, length, 2)).astype(np.complex64)
  b = (rng.normal(size=(1, length, 2)) + 1j * rng.normal(size=(1, length, 2))).astype(np.complex64)
  (h, h_last), (da, db, _) = run(None, a, b, np.zeros((1, 2), np.complex64), b, b[:, -1])
  want = np.stack([scipy.signal.lfilter([1.0], [1.0, -complex(a[0, 0, c])], b[0, :, c].astype(np.complex128))
                   for c in range(2)], axis=-1)  # with a as rounded to complex64: 1e6 steps amplify its rounding
  # float32 rounding of |h| ~ 1e3 over 1e6 steps: about 6e-4 relative here
  assert rel_err(h[0], want) < 5e-3 and rel_err(h_last[0], want[-1]) < 5e-3
  assert np.all(np.isfinite(np.asarray(da))) and np.all(np.isfinite(np.asarray(db)))


def test_default_backend_and_errors():
  assert scan.default_backend() == "chunked"  # the test suite runs on CPU
  assert [scan.default_backend(p) for p in ("cpu", "tpu", "gpu", "cuda")] == [
      "chunked", "pallas", "associative", "associative"]
  a = jnp.ones((2, 5, 3), jnp.complex64)
  with pytest.raises(HrnnError, match="scan backend 'fft' is unknown; choose one of linear, associative, chunked"):
    scan.linear_recurrence(a, a, backend="fft")
  with pytest.raises(ValueError, match="shape"):
    scan.linear_recurrence(a, a[:, :4])
  with pytest.raises(ValueError, match="h0"):
    scan.linear_recurrence(a, a, jnp.zeros((2, 4), jnp.complex64))


@pytest.mark.parametrize("backend", scan.BACKENDS)
def test_context_parallel_matches_unsharded(backend):
  # Time sharded 2, 4 and 8 ways: states, final states and cotangents (with an initial state h0) as unsharded.
  a, b, h0, dh, dh_last = random_inputs(np.random.default_rng(4), 2, 64, 3)
  want_h = reference(a, b, h0)
  want_grads = reference_grads(a, b, h0, dh, np.zeros_like(dh_last))
  for shards in (2, 4, 8):
    mesh = jax.make_mesh((shards,), ("seq",), devices=jax.devices()[:shards])
    time_sharded = NamedSharding(mesh, P(None, "seq"))

    def local(a, b, h0, backend=backend):
      return scan.linear_recurrence(a, b, h0, backend=backend, seq_axis="seq")

    # Pallas's CPU interpreter needs unchecked shard_map (see hrnn.train.sharding.sharded_logits).
    sharded = jax.shard_map(local, mesh=mesh, in_specs=(P(None, "seq"), P(None, "seq"), P()),
                            out_specs=(P(None, "seq"), P(None, "seq")), check_vma=backend != "pallas")

    @jax.jit
    def f(a, b, h0, dh):
      (h, lasts), vjp = jax.vjp(sharded, a, b, h0)
      return h, lasts, vjp((dh, jnp.zeros_like(lasts)))

    h, lasts, grads = f(*(jax.device_put(x, time_sharded) for x in (a, b)), h0, jax.device_put(dh, time_sharded))
    assert rel_err(h, want_h) < 2e-6
    # each shard's final state (concatenated over channels) is the state at its last position
    step = a.shape[1] // shards
    assert rel_err(lasts.reshape(2, shards, 3), want_h[:, step - 1::step]) < 2e-6
    for got, want in zip(grads, want_grads):
      assert rel_err(got, want) < 2e-6


def test_bench_scan_json(capsys):
  # `hrnn bench scan --json` prints one object: bandwidth_GBps and results with backend, length, mode, tokens_per_s.
  import argparse
  import json

  from hrnn.bench import scan as bench

  parser = argparse.ArgumentParser()
  bench.add_arguments(parser)
  bench.run(parser.parse_args(["--backends", "linear,chunked", "--min-log2", "4", "--max-log2", "5",
                               "--channels", "2", "--repeats", "1", "--json"]))
  report = json.loads(capsys.readouterr().out)
  assert report["bandwidth_GBps"] > 0
  assert [(r["backend"], r["length"], r["mode"]) for r in report["results"]] == [
      (backend, length, mode) for length in (16, 32) for backend in ("linear", "chunked") for mode in ("fwd", "fwd_bwd")]
  assert all(r["tokens_per_s"] > 0 and r["batch"] == 4 for r in report["results"])
  summary = report["summary"]
  assert summary["default_backend"] == "chunked" and summary["fwd"]["length"] == summary["fwd_bwd"]["length"] == 32
