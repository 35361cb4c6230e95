from __future__ import annotations

from importlib.resources import as_file, files

import anndata as ad


def pbmc3k() -> ad.AnnData:
    """10x Genomics PBMC 3k, raw UMI counts with cell-type labels, shipped with the package.

    2,638 cells that pass the standard quality control (200-2,500 genes, < 5 % mitochondrial
    counts) x 9,648 genes detected in at least 20 cells. ``X`` holds raw integer UMI counts as a
    sparse CSR matrix; ``obs['cell_type']`` has 8 types annotated with the standard scanpy
    pipeline (CD4 T, CD14+ Mono, B, CD8 T, NK, FCGR3A+ Mono, DC, Megakaryocyte).
    The data are public (10x Genomics, CC BY 4.0). Nothing is downloaded.

    Returns
    -------
    AnnData of raw counts.

    Examples
    --------
    >>> import scvi_cfgen
    >>> adata = scvi_cfgen.datasets.pbmc3k()
    >>> adata.shape
    (2638, 9648)
    """
    resource = files("scvi_cfgen.datasets").joinpath("data", "pbmc3k.h5ad")
    with as_file(resource) as path:
        adata = ad.read_h5ad(path)
    adata.obs["cell_type"] = adata.obs["cell_type"].astype("category")
    return adata
