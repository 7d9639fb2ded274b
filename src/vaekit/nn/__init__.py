"""Network building blocks shared by every model."""

from .blocks import ConvDecoder, ConvEncoder, Refiner, ResidualBlock, conv_sizes, n_downsamples

__all__ = ["ConvEncoder", "ConvDecoder", "ResidualBlock", "Refiner", "conv_sizes", "n_downsamples"]
