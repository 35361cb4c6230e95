"""Torch modules of CFGen: count autoencoder, velocity field, paths, guidance and solvers."""

from ._cfgen import CFGenModule
from ._data_statistics import DataStatistics
from ._guidance import drop_conditions, guided_velocity
from ._networks import CountDecoder, CountEncoder, FusedEncoder
from ._paths import LinearGaussianPath, ot_pair_noise
from ._solvers import integrate
from ._velocity import ResNetVelocityField

__all__ = [
    "CFGenModule",
    "CountDecoder",
    "CountEncoder",
    "DataStatistics",
    "FusedEncoder",
    "LinearGaussianPath",
    "ResNetVelocityField",
    "drop_conditions",
    "guided_velocity",
    "integrate",
    "ot_pair_noise",
]
