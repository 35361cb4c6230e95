"""Training schedules counted in optimiser steps, converted to the epochs Lightning counts.

An epoch is 2 optimiser steps on 500 cells and 4,000 on a million: a patience or budget in
epochs means a different amount of training on every data set. CFGen's defaults are therefore
set in steps and converted here, given the number of steps per epoch of the training split.
"""

from __future__ import annotations

import math

#: Default budget of each stage in optimiser steps (early stopping usually ends it sooner).
MAX_STEPS = {"autoencoder": 20_000, "flow": 20_000}
#: A stage stops when its validation loss has not improved for this many optimiser steps.
EARLY_STOPPING_PATIENCE_STEPS = 200
#: The flow's learning rate is halved when its validation loss has not improved for this many
#: optimiser steps.
LR_PATIENCE_STEPS = 100
#: Validation is checked once per epoch, so no patience is shorter than this many epochs.
MIN_PATIENCE_EPOCHS = 2
#: Validation cells wanted by default, taken where they cost at most ``MAX_VALIDATION_FRACTION``
#: of the cells (and never fewer than scvi-tools' 10 %).
MIN_VALIDATION_CELLS = 200
MAX_VALIDATION_FRACTION = 0.2
DEFAULT_VALIDATION_FRACTION = 0.1


def steps_per_epoch(n_train: int, batch_size: int) -> int:
    """Optimiser steps in one epoch over ``n_train`` cells."""
    return max(1, math.ceil(n_train / batch_size))


def epochs_for_steps(steps: int, n_steps_per_epoch: int, minimum: int = 1) -> int:
    """Epochs that hold at least ``steps`` optimiser steps (and at least ``minimum``)."""
    return max(minimum, math.ceil(steps / n_steps_per_epoch))


def default_validation_size(n_cells: int) -> float:
    """Fraction of cells for validation: 10 %, raised towards 200 cells up to 20 %.

    A validation loss over a few dozen cells is too noisy for early stopping to trust; on
    2,000 cells or more this is scvi-tools' 10 %.
    """
    wanted = MIN_VALIDATION_CELLS / max(n_cells, 1)
    return float(min(MAX_VALIDATION_FRACTION, max(DEFAULT_VALIDATION_FRACTION, wanted)))
