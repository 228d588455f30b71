"""The `eqprop` command: thin typer commands over the library; rich for display.

Every library error (EqpropError) becomes one message on stderr and exit code 2,
in `options.user_errors` and nowhere else. Each command module registers its
commands on the one `app` (in `options`); importing them here, in this order,
sets the order of `eqprop --help`.
"""

from __future__ import annotations

import numpy as np

from . import circuit, hardware, sweep, train  # noqa: F401  (they register their commands)
from .options import app


def main() -> None:
    """The console script `eqprop`."""
    # overflow in a solve of extreme values shows as NaN and "not converged", not as
    # floating-point warnings on stderr
    np.seterr(all="ignore")
    app()


__all__ = ["app", "main"]
