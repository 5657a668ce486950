"""The network: HarmonicRNN's layers, each defined once with its parallel (training) and step (decoding) form.

  array_typing  the shape legend used in signatures and docstrings (B batch, T time, d width, ...)
  initializers  initialisers the layers share
  embedding     input embeddings (sinusoidal, linear, learned)
  lru           the CG-LRU recurrence: coefficients, parallel and step forms
  blocks        recurrent and MLP residual blocks, temporal stacks, time chunks (remat_chunk)
  pooling       causal down- and up-pooling between the U-Net's levels
  harmonic_rnn  the pooled U-Net (`HarmonicRNN`), the input shift, NLL in bits
  summary       the parameter breakdown per module
  sampling      fast step-wise generation (`generate`), prefill, WAV output

The recurrence itself runs in `hrnn.ops` (kernels per platform); nothing in `hrnn.ops` imports back from here.
"""
