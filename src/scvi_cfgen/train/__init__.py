"""Training plans of the two CFGen stages, and the error raised on a non-finite loss."""

from ._callbacks import NonFiniteLossError
from ._training_plans import AutoencoderTrainingPlan, FlowTrainingPlan

__all__ = ["AutoencoderTrainingPlan", "FlowTrainingPlan", "NonFiniteLossError"]
