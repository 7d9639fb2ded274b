"""Network building blocks shared by every model."""

from .blocks import ConvDecoder, ConvEncoder, Refiner, ResidualBlock, conv_sizes, n_downsamples
from .mlp import MLPDecoder, MLPEncoder
from .resnet import ResBlock, ResDecoder, ResEncoder

__all__ = ["ConvEncoder", "ConvDecoder", "ResidualBlock", "Refiner", "conv_sizes", "n_downsamples",
           "ResBlock", "ResEncoder", "ResDecoder", "MLPEncoder", "MLPDecoder", "ARCHITECTURES", "make_encoder", "make_decoder",
           "check_network_settings"]


ARCHITECTURES = ("conv", "resnet", "mlp")


def check_network_settings(c) -> None:
    """Validate the encoder/decoder settings every autoencoder-shaped model config carries:
    latent_dim, architecture, base_channels, max_channels, norm, downsamples, mlp_widths,
    mlp_decoder_widths (the last two only used by architecture = "mlp")."""
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
    for name in ("mlp_widths", "mlp_decoder_widths"):
        widths = getattr(c, name)
        if not widths or min(widths) < 1:
            raise ConfigError(f"model.{name} must be a non-empty list of positive layer widths, got {list(widths)}")


def make_encoder(c, image_shape, out_features: int):
    """The encoder the settings `c` name (see check_network_settings). conv: stride-2 convolutions
    (DCGAN-like); resnet: IntroVAE's appendix-B residual network; mlp: Chen et al.'s fully connected one."""
    if c.architecture == "mlp":
        return MLPEncoder(image_shape, out_features, c.mlp_widths, c.norm)
    cls = ConvEncoder if c.architecture == "conv" else ResEncoder
    return cls(image_shape, out_features, c.base_channels, c.max_channels, c.norm, downsamples=c.downsamples)


def make_decoder(c, in_features: int, image_shape):
    """The decoder mirroring make_encoder's choice; it emits the likelihood's raw parameters."""
    if c.architecture == "mlp":
        return MLPDecoder(in_features, image_shape, c.mlp_decoder_widths, c.norm)
    if c.architecture == "conv":
        return ConvDecoder(in_features, image_shape, None, c.base_channels, c.max_channels, c.norm,
                           downsamples=c.downsamples)
    return ResDecoder(in_features, image_shape, c.base_channels, c.max_channels, c.norm, downsamples=c.downsamples)
