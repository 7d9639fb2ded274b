"""The network settings every autoencoder-shaped model shares, in one dataclass its config inherits."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import applies_when, refuse_inapplicable


def _is_mlp(c) -> bool:
    return c.architecture == "mlp"


@dataclass(frozen=True)
class NetworkConfig:
    latent_dim: int = 32
    architecture: str = "conv"  # conv: stride-2 convolutions (DCGAN-like) | resnet: IntroVAE's appendix B
    #                             | mlp: fully connected (Chen et al. 2018's dSprites networks)
    base_channels: int = 32  # width of the first conv layer, doubled per halving
    max_channels: int = 256
    norm: str = "batch"  # batch | none
    downsamples: int = 0  # stride-2 convolutions in the encoder (mirrored in the decoder); 0 = until <= 7 px
    mlp_widths: tuple[int, ...] = field(default=(1200, 1200), metadata=applies_when(_is_mlp, "model.architecture = 'mlp'"))
    #   encoder hidden layers (ReLU)
    mlp_decoder_widths: tuple[int, ...] = field(default=(1200, 1200, 1200),
                                                metadata=applies_when(_is_mlp, "model.architecture = 'mlp'"))
    #   decoder hidden layers (tanh)

    def __post_init__(self):
        from . import check_network_settings

        check_network_settings(self)
        refuse_inapplicable(self)
