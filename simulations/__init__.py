"""hdlora simulations: the finite-d JAX model, data, trainers and metrics (MODEL.md).

May import ``theory`` (config, schema, predictions); ``theory`` never imports this package.
"""

import theory  # noqa: F401  (turns on float64, shares the config)
