"""Training curves of both stages."""

from __future__ import annotations


def training_history(model, log_scale_autoencoder: bool = True):
    """Plot training and validation losses of the autoencoder and the flow, side by side.

    Parameters
    ----------
    model
        A trained :class:`~scvi_cfgen.CFGenModel`.
    log_scale_autoencoder
        Use a log scale for the autoencoder's loss axis.

    Returns
    -------
    The matplotlib figure.
    """
    import matplotlib.pyplot as plt

    history = model.history or {}
    if not any(key.endswith(("_autoencoder", "_flow")) for key in history):
        raise ValueError("The model has no training history; train it first.")
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, stage, ylabel in (
        (axes[0], "autoencoder", "NB negative log-likelihood per cell"),
        (axes[1], "flow", "flow matching loss per cell"),
    ):
        for split in ("train", "validation"):
            key = f"{split}_loss_{stage}"
            if key in history:
                values = history[key].iloc[:, 0]
                axis.plot(values.index, values.to_numpy(), label=split)
        axis.set_title(f"{stage} ({len(history.get(f'train_loss_{stage}', []))} epochs)")
        axis.set_xlabel("epoch")
        axis.set_ylabel(ylabel)
        axis.legend(frameon=False)
    if log_scale_autoencoder:
        axes[0].set_yscale("log")
    figure.tight_layout()
    return figure
