"""genjax: the classic generative models in JAX.

The math modules (`divergences`, `gan`, `autoencoders`, `vae`, `vq`, `diffusion`) depend on JAX
only. Every submodule is imported lazily on first attribute access, so `import genjax` itself
imports nothing heavy (not even JAX) and a user of `genjax.divergences` never pays for Flax,
Optax, Orbax, TFDS or matplotlib.

    >>> import genjax
    >>> genjax.divergences.entropy  # doctest: +ELLIPSIS
    <function entropy at ...>
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public submodules, in layer order (math first, runtime after).
_SUBMODULES = (
    "divergences",
    "gan",
    "autoencoders",
    "vae",
    "vq",
    "diffusion",
    "nn",
    "data",
    "train",
    "metrics",
    "report",
)

__all__ = [*_SUBMODULES, "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for static analysers only
    from genjax import data, divergences, report, train  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"genjax.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'genjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
