"""Native CPU kernels of the linear recurrence (`hrnn/ops/csrc/linear_scan.cc`), called through the XLA FFI.

XLA's CPU code for a sequential loop that reads and writes one time step per iteration runs at a few GB/s (its
dynamic-slice and dynamic-update-slice loops are not vectorised); the C++ kernels walk the same recurrence at
close to memory bandwidth. `hrnn.ops.scan`'s `chunked` backend uses them on CPU when they can be built:

- `scan(a, b, s0, reverse=..., keep_states=...)`: the kernel interface of `hrnn.ops.scan` (`Kernel`);
- `gradient(a, h, h_start, dh, carry)`: the custom VJP's backward pass fused into one pass, (da, db, dh0).

Lowered for another platform than CPU, they stop with `hrnn.ops.platforms.PlatformError`.

The library is compiled on first use with the system's C++ compiler against the XLA FFI headers that ship with
jaxlib, into `$HRNN_CACHE/kernels` (default `~/.cache/hrnn/kernels`), keyed by the source, the jaxlib version and
the compiler, and written atomically (parallel test workers may build it at once). No compiler, or a failed
build, gives one warning and the XLA loop instead; `HRNN_NATIVE=0` turns the kernels off.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path

import jax
import jaxlib
import numpy as np
from jax import lax

from hrnn.ops.platforms import unsupported

SOURCE = Path(__file__).parent / "csrc" / "linear_scan.cc"
_SUFFIX = {np.dtype(np.complex64): "c64", np.dtype(np.float32): "f32"}
TARGETS = tuple(f"hrnn_scan{kind}_{suffix}" for kind in ("", "_final", "_grad") for suffix in _SUFFIX.values())
# Portable code (no -march=native): a cached library may be loaded on another machine sharing the home directory.
CXXFLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-pthread")


class NativeBuildError(RuntimeError):
  """The kernel library could not be compiled; the message holds the compiler's output."""


def cache_dir() -> Path:
  return Path(os.environ.get("HRNN_CACHE", Path.home() / ".cache" / "hrnn")) / "kernels"


def compiler() -> str | None:
  """The C++ compiler: $CXX, else the first of g++, c++, clang++ on PATH."""
  return os.environ.get("CXX") or next(filter(None, map(shutil.which, ("g++", "c++", "clang++"))), None)


def build(cxx: str, directory: Path | None = None) -> Path:
  """Compiles the kernels (once: the library is cached under a key of everything it depends on); its path."""
  version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
  key = hashlib.sha256("\0".join([SOURCE.read_text(), jaxlib.__version__, version, platform.machine(),
                                  " ".join(CXXFLAGS)]).encode()).hexdigest()[:16]
  directory = directory or cache_dir()
  path = directory / f"linear_scan-{key}.so"
  if path.exists():
    return path
  directory.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=directory) as tmp:
    target = Path(tmp) / path.name
    done = subprocess.run([cxx, *CXXFLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", str(target)],
                          capture_output=True, text=True)
    if done.returncode:
      raise NativeBuildError(f"{cxx} failed to build {SOURCE}:\n{done.stderr[-4000:]}")
    os.replace(target, path)  # atomic: another process sees the whole library or none
  return path


@functools.cache
def _library() -> ctypes.CDLL | None:
  """Builds, loads and registers the kernels once per process; None (after one warning) when impossible."""
  cxx = compiler()
  try:
    if cxx is None:
      raise NativeBuildError("no C++ compiler found (set CXX, or install g++)")
    library = ctypes.cdll.LoadLibrary(str(build(cxx)))
  except (NativeBuildError, OSError) as error:
    warnings.warn(f"hrnn: native CPU scan kernels unavailable, using the slower XLA loop ({error})", stacklevel=3)
    return None
  for name in TARGETS:
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(library, name)), platform="cpu")
  return library


def available() -> bool:
  """Whether `scan` and `gradient` can be used now: on CPU, with HRNN_NATIVE not 0 and the library built."""
  return (jax.default_backend() == "cpu" and os.environ.get("HRNN_NATIVE", "1") != "0"
          and _library() is not None)


def _call(kind: str, dtype, results, *args, **attrs):
  suffix = _SUFFIX.get(np.dtype(dtype))
  if suffix is None:
    raise TypeError(f"hrnn.ops.native: no kernel for dtype {np.dtype(dtype)} (complex64 and float32 only)")
  if _library() is None:
    raise RuntimeError("hrnn.ops.native: the kernels could not be built (see the warning above)")

  def ffi(*args):
    outputs = jax.ffi.ffi_call(f"hrnn_scan{kind}_{suffix}", results, vmap_method="sequential")(*args, **attrs)
    # Inside shard_map, an FFI call's results vary over no mesh axis; give them the inputs' (a type, no data moves).
    axes = tuple(sorted(set().union(*(jax.typeof(x).mat.varying for x in args))))
    return jax.lax.pcast(outputs, axes, to="varying") if axes else outputs

  def refused(*args):  # outputs of the right types (operands of the same shapes) behind the guard
    args = _REFUSE(*args)
    like = lambda r: next(x for x in args if x.shape == r.shape and x.dtype == r.dtype)
    return like(results) if isinstance(results, jax.ShapeDtypeStruct) else tuple(map(like, results))

  return lax.platform_dependent(*args, cpu=ffi, default=refused)


_REFUSE = unsupported("the native CPU scan kernels (hrnn.ops.native)",
                      "use scan backend 'chunked' (XLA loops off CPU), 'pallas', 'associative' or 'linear'")


def scan(a: jax.Array, b: jax.Array, s0: jax.Array, *, reverse: bool = False,
         keep_states: bool = True) -> tuple[jax.Array | None, jax.Array]:
  """The `hrnn.ops.scan.Kernel` interface: s_t = a_t s_{t-1} + b_t from s0 (or, `reverse`, the backward pass's
  s_t = a_{t+1} s_{t+1} + b_t from the carry s0 = a_T s_T, with final state s_0). a, b [B, T, C]; s0 [B, C].
  Returns (states [B, T, C] or None, final state [B, C])."""
  state = jax.ShapeDtypeStruct(s0.shape, s0.dtype)
  if not keep_states:
    return None, _call("_final", a.dtype, state, a, b, s0, reverse=reverse)
  states, final = _call("", a.dtype, (jax.ShapeDtypeStruct(a.shape, a.dtype), state), a, b, s0, reverse=reverse)
  return states, final


def gradient(a: jax.Array, h: jax.Array, h_start: jax.Array, dh: jax.Array,
             carry: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """The recurrence's backward pass in one pass over time (see `hrnn.ops.scan`): g_t = dh_t + a_{t+1} g_{t+1} entered
  with `carry` = a_T g_T, and returns (da_t = g_t h_{t-1} with h_{-1} = h_start, db = g, dh0 = a_0 g_0)."""
  full = jax.ShapeDtypeStruct(a.shape, a.dtype)
  state = jax.ShapeDtypeStruct(h_start.shape, h_start.dtype)
  return _call("_grad", a.dtype, (full, full, state), a, h, h_start, dh, carry)
