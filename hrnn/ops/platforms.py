"""Which platform a kernel can run on, decided when the program is lowered (not when it is traced).

`jax.lax.platform_dependent` stages out one branch per platform and keeps, at lowering, only the branch of the
platform lowered for, so an exported or ahead-of-time lowered program gets the target's code even when it is traced
on another machine. `unsupported` is the branch for the platforms a kernel cannot run on: lowering it stops with
`PlatformError` (one line naming the kernel, the platform and the alternatives) instead of a compiler trace.
"""

from __future__ import annotations

import jax
from jax.extend.core import Primitive
from jax.interpreters import batching, mlir

from hrnn.errors import HrnnError


class PlatformError(HrnnError):
  """A scan backend or kernel was lowered for a platform it cannot run on."""


def _refuse(*args, message: str):
  return args


_refuse_p = Primitive("hrnn_unsupported_platform")
_refuse_p.multiple_results = True
_refuse_p.def_impl(_refuse)  # never lowered for a platform it accepts: see the lowering rule
_refuse_p.def_abstract_eval(lambda *avals, message: avals)
batching.primitive_batchers[_refuse_p] = lambda args, dims, message: (_refuse_p.bind(*args, message=message), dims)


def _lowering(ctx: mlir.LoweringRuleContext, *args, message: str):
  platforms = ", ".join(ctx.module_context.platforms)
  raise PlatformError(message.format(platform=platforms))


mlir.register_lowering(_refuse_p, _lowering)


def unsupported(what: str, alternatives: str):
  """A `platform_dependent` branch for the platforms `what` cannot run on. Called with the branch's operands and
  a function `placeholder(*operands)` giving outputs of the right types, it returns them behind a guard whose
  lowering raises `PlatformError`: "`what` cannot run on platform P; `alternatives`"."""
  message = f"{what} cannot run on platform {{platform}}; {alternatives}"

  def guard(*operands: jax.Array) -> tuple[jax.Array, ...]:
    return tuple(_refuse_p.bind(*operands, message=message))

  return guard
