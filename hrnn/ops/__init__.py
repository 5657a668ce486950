"""The linear recurrence h_t = a_t * h_{t-1} + b_t and its kernels, one per platform.

  scan       `linear_recurrence`: every backend, the default per platform lowered for, the custom VJP,
             sequence-parallel carries (`shard_carry`)
  native     the `chunked` backend's CPU kernels (C++ in csrc/, called through the XLA FFI, built on first use)
  pallas     the `pallas` backend: TPU (Mosaic) and GPU (Triton) kernels
  platforms  which platform a function is lowered for; the error for a kernel lowered where it cannot run

Only `scan` imports the kernels (`native`, `pallas`); nothing here imports the model, training or data.
"""
