"""Counterfactual transfer: invert cells to noise under their own attributes, regenerate."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import torch
from scvi.utils import track

from scvi_cfgen._constants import ATAC_X_KEY, CAT_COVS_KEY, X_KEY
from scvi_cfgen.module._solvers import SolverBackend, SolverMethod, solver_options

from ._clusters import cluster_codes_of
from ._conditions import check_trained_categories, encode_categories, resolve_weights
from ._model_state import require_stage
from ._output import base_seed, chunk_size, draw_cells, stack_output

TRANSFERRED_LATENT_KEY = "X_cfgen_transferred"


class TransferMixin:
    """Adds :meth:`transfer` to :class:`~scvi_cfgen.CFGenModel`."""

    @torch.inference_mode()
    def transfer(
        self,
        adata: ad.AnnData | None = None,
        to: Mapping[str, object] | None = None,
        indices: Sequence[int] | None = None,
        guidance_weights: float | Mapping[str, float] | None = None,
        seed: int | None = None,
        batch_size: int = 1024,
        solver: SolverMethod = "dopri5",
        n_steps: int = 100,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        solver_backend: SolverBackend = "torchdiffeq",
        progress_bar: bool = True,
    ) -> ad.AnnData | md.MuData:
        """Counterfactual cells: the same cells as if they had other attributes.

        Each cell is encoded, its latent is integrated backwards (t = 1 -> 0) through the guided
        field under its own attributes to noise, then forwards (t = 0 -> 1) under the attributes
        in ``to`` (the others kept), decoded with the cell's own library size, and counts are
        drawn. With ``to`` equal to the cells' own attributes the latents come back unchanged up
        to the solver tolerance. A model conditioned on clusters (``cluster_resolution``) takes
        each cell's own cluster from :meth:`get_clusters` (by ``obs_names``), so it transfers
        cells the clusters were derived from, e.g. ``to={"cluster": "2"}``.

        Parameters
        ----------
        adata
            Cells to transfer, with the training genes and attributes (``None``: the registered
            AnnData); a MuData with the training modalities for a model set up with
            :meth:`setup_mudata` (both modalities are encoded; RNA keeps each cell's library).
        to
            New categories, e.g. ``{"donor": "d2"}``; attributes not named keep their own.
        indices
            Cells of ``adata`` to transfer; ``None`` for all.
        guidance_weights
            Guidance weight of every attribute in both directions (number or dict; default 1).
        seed
            Random seed of the count sampling; as in :meth:`generate`, each block of 64 cells
            draws from its own seed, so the cells do not depend on ``batch_size``.
        batch_size
            Cells per chunk.
        solver, n_steps, rtol, atol, solver_backend
            ODE solver settings, as in :meth:`generate`.
        progress_bar
            Show a progress bar over chunks.

        Returns
        -------
        AnnData of raw counts with the cells' ``obs`` in which the transferred attributes hold
        their new categories (the old ones in ``<attribute>_original``), and the transferred
        latents in ``obsm['X_cfgen_transferred']``. For a MuData model, a MuData laid out as
        :meth:`generate`'s, with the latents in the MuData's ``obsm``.
        """
        require_stage(self, "flow", "transfer")
        solver_kwargs = solver_options(solver, n_steps, rtol, atol, solver_backend)
        attributes = self.attribute_categories
        if not to:
            raise ValueError("Give the new attributes, e.g. `to={'batch': 'b2'}`.")
        if not isinstance(to, Mapping):
            raise ValueError("`to` must be a dict {attribute: category}.")
        names = list(attributes)
        targets = {}
        for name, value in to.items():
            if name not in attributes:
                raise ValueError(
                    f"Cannot transfer to {name!r}: the model was trained with attributes "
                    f"{names or 'none'}. Register it in `setup_anndata` and retrain."
                )
            targets[names.index(name)] = int(encode_categories(name, [value], attributes[name])[0])
        target_codes = np.full((1, len(names)), -1, dtype=np.int64)
        for index, code in targets.items():
            target_codes[0, index] = code
        check_trained_categories(target_codes, attributes, self.module.statistics)
        weights = resolve_weights(guidance_weights, np.ones(len(names), bool), attributes, False)

        adata = self._validate_anndata(adata)
        selected = np.arange(adata.n_obs) if indices is None else np.asarray(indices)
        clusters = None
        if self.cluster_categories_ is not None:  # each cell's own cluster, by name
            clusters = torch.as_tensor(cluster_codes_of(self, adata.obs_names[selected]))
        module = self.module.eval()
        device = self.device
        seed = base_seed(seed)
        loader = self._make_data_loader(
            adata=adata, indices=indices, batch_size=chunk_size(int(batch_size))
        )
        chunks, latents, start = [], [], 0
        for tensors in track(loader, description="Transferring cells", disable=not progress_bar):
            x, x_atac = (tensors.get(key) for key in (X_KEY, ATAC_X_KEY))
            x, x_atac = (None if t is None else t.to(device) for t in (x, x_atac))
            n_chunk = (x if x is not None else x_atac).shape[0]
            source = tensors.get(CAT_COVS_KEY, torch.zeros(n_chunk, 0)).to(device).long()
            if clusters is not None:
                own = clusters[start : start + n_chunk].to(device)[:, None]
                source = torch.cat([source, own], dim=1)
            target = source.clone()
            for index, code in targets.items():
                target[:, index] = code
            cell_weights = torch.as_tensor(weights, dtype=torch.float32, device=device)
            cell_weights = cell_weights.expand(source.shape[0], -1)
            library = x.sum(dim=1) if x is not None else None
            size = None if library is None else module.size_factor_condition(library.log())
            noise = module.integrate_latent(
                module.encode_standardized(x, x_atac),
                source,
                cell_weights,
                size,
                1.0,
                0.0,
                **solver_kwargs,
            )
            moved = module.integrate_latent(
                noise, target, cell_weights, size, 0.0, 1.0, **solver_kwargs
            )
            z = module.unstandardize_latent(moved)
            chunks.append(
                draw_cells(
                    module.autoencoder, z, library, module.dispersion_codes(target), seed, start
                )
            )
            latents.append(z.cpu().numpy())
            start += z.shape[0]

        obs = adata.obs.iloc[selected].copy()
        for index in targets:
            name = names[index]
            if name in obs:
                obs[f"{name}_original"] = obs[name]
            obs[name] = pd.Categorical.from_codes(
                np.full(len(obs), targets[index]), categories=attributes[name]
            )
        uns = {
            "cfgen_transfer": {
                "to": {str(k): str(v) for k, v in to.items()},
                "guidance_weights": {n: float(w) for n, w in zip(names, weights, strict=True)},
                "solver": solver,
            }
        }
        moved_cells = stack_output(
            chunks, module.modalities, self.output_var_names, self.modality_names, obs, uns
        )
        moved_cells.obsm[TRANSFERRED_LATENT_KEY] = np.concatenate(latents)
        return moved_cells
