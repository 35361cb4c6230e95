"""Training plans of the two CFGen stages."""

from ._training_plans import AutoencoderTrainingPlan, FlowTrainingPlan

__all__ = ["AutoencoderTrainingPlan", "FlowTrainingPlan"]
