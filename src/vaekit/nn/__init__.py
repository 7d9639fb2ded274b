"""Network building blocks shared by every model."""

from .blocks import ConvDecoder, ConvEncoder, Refiner, ResidualBlock, conv_sizes, n_downsamples
from .resnet import ResBlock, ResDecoder, ResEncoder

__all__ = ["ConvEncoder", "ConvDecoder", "ResidualBlock", "Refiner", "conv_sizes", "n_downsamples",
           "ResBlock", "ResEncoder", "ResDecoder", "ARCHITECTURES", "make_encoder", "make_decoder"]


ARCHITECTURES = ("conv", "resnet")


def make_encoder(architecture: str, image_shape, out_features: int, base_channels: int, max_channels: int,
                 norm: str, downsamples: int | None):
    """conv: stride-2 convolutions (DCGAN-like); resnet: IntroVAE's appendix-B residual network."""
    cls = ConvEncoder if architecture == "conv" else ResEncoder
    return cls(image_shape, out_features, base_channels, max_channels, norm, downsamples=downsamples)


def make_decoder(architecture: str, in_features: int, image_shape, base_channels: int, max_channels: int,
                 norm: str, downsamples: int | None):
    if architecture == "conv":
        return ConvDecoder(in_features, image_shape, None, base_channels, max_channels, norm, downsamples=downsamples)
    return ResDecoder(in_features, image_shape, base_channels, max_channels, norm, downsamples=downsamples)
