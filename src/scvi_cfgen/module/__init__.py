"""Torch modules of CFGen: count autoencoder, latent flow, paths, guidance and solvers."""

from ._autoencoder import CountAutoencoder
from ._cfgen import CFGenModule
from ._data_statistics import DataStatistics
from ._flow import LatentFlow
from ._guidance import GuidedVelocity, drop_conditions, guided_velocity
from ._networks import CountDecoder, CountEncoder, FusedEncoder
from ._paths import LinearGaussianPath, ot_pair_noise
from ._realism import RealismScorer
from ._solvers import integrate
from ._velocity import ResNetVelocityField

__all__ = [
    "CFGenModule",
    "CountAutoencoder",
    "CountDecoder",
    "CountEncoder",
    "DataStatistics",
    "FusedEncoder",
    "GuidedVelocity",
    "LatentFlow",
    "LinearGaussianPath",
    "RealismScorer",
    "ResNetVelocityField",
    "drop_conditions",
    "guided_velocity",
    "integrate",
    "ot_pair_noise",
]
