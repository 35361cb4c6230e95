"""Putting back the requested cell order of minibatches read from backed (on-disk) data."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch


class RequestedOrderLoader:
    """A non-shuffling data loader whose minibatches hold their cells in the order requested.

    scvi-tools reads a minibatch of a backed AnnData in increasing row order (h5py needs
    sorted indices), so ``indices=[5, 3]`` would come back as rows 3, 5. Each minibatch is
    permuted back to the order of its slice of ``indices`` as it is loaded.
    """

    def __init__(self, loader, indices: Sequence[int]):
        self.loader = loader
        self.indices = np.asarray(indices)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        start = 0
        for tensors in self.loader:
            n_rows = next(iter(tensors.values())).shape[0]
            requested = self.indices[start : start + n_rows]
            start += n_rows
            if np.all(requested[:-1] <= requested[1:]):
                yield tensors
                continue
            ranks = torch.as_tensor(np.argsort(np.argsort(requested, kind="stable")))
            yield {
                key: tensor.index_select(0, ranks.to(tensor.device))
                for key, tensor in tensors.items()
            }


def needs_requested_order(adata, indices, shuffle: bool) -> bool:
    """Whether minibatches of ``adata`` at ``indices`` come back out of the requested order."""
    if indices is None or shuffle or not getattr(adata, "isbacked", False):
        return False
    indices = np.asarray(indices)
    return bool(np.any(indices[:-1] > indices[1:]))
