"""Training the X-Codec2 family: recipes, losses, discriminators, the trainable generator.

Nothing here is imported by the inference package; ``import xcodec`` does not load it.
"""

from xcodec.train.discriminators import (
    Discriminators,
    MultiPeriodDiscriminator,
    MultiResolutionSTFTDiscriminator,
)
from xcodec.train.generator import FREEZE_GROUPS, GeneratorOutput, TrainableXcodec2
from xcodec.train.init import reinit_for_training_
from xcodec.train.losses import (
    MultiScaleMelLoss,
    feature_matching_loss,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
    semantic_loss,
)
from xcodec.train.recipe import TrainRecipe, load_recipe, lr_at
from xcodec.train.semantic_head import SemanticReconstructionHead

__all__ = [
    "FREEZE_GROUPS",
    "Discriminators",
    "GeneratorOutput",
    "MultiPeriodDiscriminator",
    "MultiResolutionSTFTDiscriminator",
    "MultiScaleMelLoss",
    "SemanticReconstructionHead",
    "TrainRecipe",
    "TrainableXcodec2",
    "feature_matching_loss",
    "load_recipe",
    "lr_at",
    "lsgan_discriminator_loss",
    "lsgan_generator_loss",
    "reinit_for_training_",
    "semantic_loss",
]
