"""Training the X-Codec2 family: recipes, losses, discriminators, the trainable generator.

Nothing here is imported by the inference package; ``import xcodec`` does not load it.
"""

from xcodec.train.recipe import TrainRecipe, load_recipe, lr_at

__all__ = [
    "TrainRecipe",
    "load_recipe",
    "lr_at",
]
