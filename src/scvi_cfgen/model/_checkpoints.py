"""The checkpoint directory of a ``train`` call: its split, finished stages, the running stage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

_SPLIT = "split.npz"


class TrainingCheckpoints:
    """Files that let an interrupted :meth:`~scvi_cfgen.CFGenModel.train` resume.

    - ``split.npz``: the train/validation/test cells and the data's size and gene names, so a
      resumed run trains on the same split of the same data;
    - ``<stage>.pt``: the module's weights when a stage finished (read with
      ``weights_only=True``);
    - ``<stage>.ckpt``: the running stage's last Lightning checkpoint (weights, optimiser,
      learning-rate scheduler, early stopping, epoch), removed when the stage finishes.
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def stage_checkpoint(self, stage: str) -> Path:
        """Lightning checkpoint of a running ``stage``."""
        return self.directory / f"{stage}.ckpt"

    def finished_weights(self, stage: str) -> Path:
        """Weights written when ``stage`` finished."""
        return self.directory / f"{stage}.pt"

    def start(self) -> None:
        """Prepare the directory for a new run; refuse one that holds another run's files."""
        if self.directory.exists() and any(self.directory.iterdir()):
            raise ValueError(
                f"Checkpoint directory {str(self.directory)!r} is not empty. Pass "
                "`resume=True` to continue the run it holds, or choose an empty directory."
            )
        self.directory.mkdir(parents=True, exist_ok=True)

    def write_split(self, splitter, n_obs: int, gene_names) -> None:
        """Record the split and the data it was drawn from."""
        np.savez(
            self.directory / _SPLIT,
            train=np.asarray(splitter.train_idx),
            validation=np.asarray(splitter.val_idx),
            test=np.asarray(
                [] if getattr(splitter, "test_idx", None) is None else splitter.test_idx,
                dtype=np.int64,
            ),
            n_obs=np.int64(n_obs),
            gene_names=np.asarray([str(name) for name in gene_names]),
        )

    def read_split(self, n_obs: int, gene_names) -> list[np.ndarray]:
        """The recorded split, after checking that it belongs to these data."""
        path = self.directory / _SPLIT
        if not path.is_file():
            raise ValueError(
                f"Nothing to resume in {str(self.directory)!r}: it has no {_SPLIT}. Train "
                "with `checkpoint_dir=...` (and without `resume`) first."
            )
        with np.load(path, allow_pickle=False) as saved:
            if int(saved["n_obs"]) != n_obs or list(saved["gene_names"]) != [
                str(name) for name in gene_names
            ]:
                raise ValueError(
                    f"The run in {str(self.directory)!r} was trained on other data "
                    f"({int(saved['n_obs'])} cells, or other genes); resume it with the same "
                    "registered data."
                )
            return [saved[key] for key in ("train", "validation", "test")]

    def finish(self, stage: str, module: torch.nn.Module) -> None:
        """Record that ``stage`` finished, with the module's weights; drop its running state."""
        partial = self.finished_weights(stage).with_suffix(".partial")
        torch.save(module.state_dict(), partial)
        partial.replace(self.finished_weights(stage))
        self.stage_checkpoint(stage).unlink(missing_ok=True)

    def finished_state(self, stage: str) -> dict | None:
        """Weights of ``stage`` if it finished in the recorded run, else ``None``."""
        path = self.finished_weights(stage)
        if not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=True)

    def resume_from(self, stage: str) -> str | None:
        """Lightning checkpoint to resume ``stage`` from, if it was interrupted after one."""
        path = self.stage_checkpoint(stage)
        return str(path) if path.is_file() else None
