"""hrnn: a reproducibility kit for HarmonicRNN (linear RNNs for autoregressive generation of long music samples)."""

__version__ = "0.1.0"
