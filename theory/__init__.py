"""hdlora theory: asymptotic (d -> infinity) solvers. Pure maths; never imports ``simulations``.

Importing the package turns on float64 in JAX (``jax_enable_x64``): the solvers need it.
"""

import jax

jax.config.update("jax_enable_x64", True)

from .config import Config, ConfigError, load_config  # noqa: E402

__all__ = ["Config", "ConfigError", "load_config"]
