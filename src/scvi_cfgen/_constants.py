"""Registry keys shared by the model, the module and the training plans."""

from scvi import REGISTRY_KEYS

X_KEY = REGISTRY_KEYS.X_KEY
ATAC_X_KEY = REGISTRY_KEYS.ATAC_X_KEY
CAT_COVS_KEY = REGISTRY_KEYS.CAT_COVS_KEY
SIZE_FACTOR_OBS_KEY = "size_factor"
RNA = "rna"
ATAC = "atac"

# Registry keys of the flow stage's latent table (see ``model/_latent_table.py``).
LATENT_KEY = "latent"
LOG_LIBRARY_KEY = "log_library"
SEED_TOTAL_KEY = "seed_total"
