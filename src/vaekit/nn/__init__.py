"""Network building blocks shared by every model."""

from .blocks import ConvDecoder, ConvEncoder, Refiner, ResidualBlock, conv_sizes, n_downsamples
from .resnet import ResBlock, ResDecoder, ResEncoder

__all__ = ["ConvEncoder", "ConvDecoder", "ResidualBlock", "Refiner", "conv_sizes", "n_downsamples",
           "ResBlock", "ResEncoder", "ResDecoder", "ARCHITECTURES", "make_encoder", "make_decoder",
           "check_network_settings"]


ARCHITECTURES = ("conv", "resnet")


def check_network_settings(c) -> None:
    """Validate the encoder/decoder settings every autoencoder-shaped model config carries:
    latent_dim, architecture, base_channels, max_channels, norm, downsamples."""
    from ..errors import ConfigError

    if c.latent_dim < 1:
        raise ConfigError(f"model.latent_dim must be >= 1, got {c.latent_dim}")
    if c.architecture not in ARCHITECTURES:
        raise ConfigError(f"model.architecture must be one of {', '.join(ARCHITECTURES)}, got {c.architecture!r}")
    if c.base_channels < 1 or c.max_channels < c.base_channels:
        raise ConfigError("model.base_channels must be >= 1 and <= model.max_channels")
    if c.norm not in ("batch", "none"):
        raise ConfigError(f"model.norm must be 'batch' or 'none', got {c.norm!r}")
    if c.downsamples < 0:
        raise ConfigError(f"model.downsamples must be >= 0, got {c.downsamples}")


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
