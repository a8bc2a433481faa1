"""Flax linen modules used by the experiments (parameters are plain pytrees)."""

from genjax.nn._autoencoders import DenseAutoencoder
from genjax.nn._classifier import MnistClassifier, cross_entropy_loss
from genjax.nn._conv import Conv, UpsampleConv, conv2d, upsample_conv2d
from genjax.nn._gan import (
    DcganDiscriminator,
    DcganGenerator,
    MinibatchDiscrimination,
    MlpDiscriminator,
    MlpGenerator,
    VirtualBatchNorm,
)
from genjax.nn._diffusion import MlpDenoiser, TimeEmbedding, UNet, sinusoidal_embedding
from genjax.nn._prior import CodePrior, sample_codes
from genjax.nn._vae import VaeConv, VaeMlp
from genjax.nn._vqvae import VQVAEDecoder, VQVAEEncoder, upsample_nearest

__all__ = ["CodePrior", "Conv", "DcganDiscriminator", "DcganGenerator", "DenseAutoencoder", "MinibatchDiscrimination",
           "MlpDiscriminator", "MlpGenerator", "VirtualBatchNorm", "MnistClassifier", "MlpDenoiser", "TimeEmbedding", "UNet", "UpsampleConv", "VQVAEDecoder", "VQVAEEncoder", "VaeConv", "VaeMlp",
           "conv2d", "cross_entropy_loss", "sample_codes", "sinusoidal_embedding", "upsample_conv2d",
           "upsample_nearest"]
