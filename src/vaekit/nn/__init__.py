"""Network building blocks shared by every model."""

from .blocks import ConvDecoder, ConvEncoder, ResidualBlock, conv_sizes, n_downsamples

__all__ = ["ConvEncoder", "ConvDecoder", "ResidualBlock", "conv_sizes", "n_downsamples"]
