"""Training the X-Codec2 family: recipes, losses, discriminators, the trainable generator.

Nothing here is imported by the inference package; ``import xcodec`` does not load it.
One step of the original recipe with these parts (the loop itself is ``train/loop.py``)::

    recipe = load_recipe("tiny", ["batch_size=4"])
    generator = TrainableXcodec2(model, freeze=recipe.freeze,  # model: Xcodec2Model / NeuCodecModel
                                 fsq_input_norm=recipe.fsq_input_norm == "on")  # issue 12's collapse fix
    discriminators = Discriminators.from_config(recipe.discriminators)
    mel_loss = MultiScaleMelLoss(recipe.sample_rate, recipe.mel_loss.n_mels, recipe.mel_loss.windows)
    g_opt = AdamW(generator.trainable_parameters(), lr=lr_at(step, recipe), betas=recipe.optimizer.betas)

    out = generator(audio)                                   # audio (B, T) at 16 kHz
    real, fake = audio[:, None], out.audio[:, None]          # NeuCodec: resample `audio` to 24 kHz first
    if step >= recipe.gan_start_step:                        # discriminator step first
        d_loss = lsgan_discriminator_loss(discriminators(real)[0], discriminators(fake.detach())[0])
        ...backward, clip to recipe.grad_clip, step
    w = recipe.loss_weights
    loss = w.mel * mel_loss(out.audio, audio) + w.semantic * semantic_loss(out.semantic_pred, out.semantic_target)
    if step >= recipe.gan_start_step:                        # discriminators' own grads not needed here
        fake_logits, fake_maps = discriminators(fake)
        with torch.no_grad():
            _, real_maps = discriminators(real)
        loss = loss + w.adv * lsgan_generator_loss(fake_logits) + w.fm * feature_matching_loss(real_maps, fake_maps)
    ...backward, clip, step
    with generator.folded_inference_model() as model:     # FSQ input norm folded in (if on)
        model.save_pretrained(folder)

From scratch, call :func:`reinit_for_training_` on the freshly built model first.
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
