"""The conv encoder/decoder adapt to every supported size and channel count."""

import pytest
import torch

from vaekit.errors import ConfigError
from vaekit.nn import ConvDecoder, ConvEncoder, ResDecoder, ResEncoder, ResidualBlock


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64), (3, 128, 128), (1, 8, 8), (3, 48, 40)])
def test_encoder_decoder_round_trip_shapes(shape):
    enc = ConvEncoder(shape, 10, base_channels=4, max_channels=16)
    dec = ConvDecoder(5, shape, base_channels=4, max_channels=16)
    x = torch.rand(2, *shape)
    assert enc(x).shape == (2, 10)
    assert dec(torch.randn(2, 5)).shape == (2, *shape)
    assert max(enc.feature_shape[1:]) <= 7


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32), (1, 64, 64), (1, 8, 8), (3, 48, 40), (1, 27, 27)])
def test_residual_encoder_decoder_of_introvae_round_trip_shapes(shape):
    """Appendix B scaled down: one avg-pool + res-block per halving; odd sizes come back exactly."""
    enc = ResEncoder(shape, 10, base_channels=4, max_channels=16)
    dec = ResDecoder(5, shape, base_channels=4, max_channels=16)
    assert enc(torch.rand(2, *shape)).shape == (2, 10)
    assert dec(torch.randn(2, 5)).shape == (2, *shape)
    assert max(enc.feature_shape[1:]) <= 7
    pools = sum(isinstance(m, torch.nn.AvgPool2d) for m in enc.features)
    ups = sum(isinstance(m, torch.nn.Upsample) for m in dec.features)
    assert pools == ups >= 1


def test_too_small_images_refused():
    with pytest.raises(ConfigError, match="too small"):
        ConvEncoder((1, 6, 6), 4)


def test_residual_block_keeps_shape_and_is_identity_plus_body():
    block = ResidualBlock(6)
    x = torch.randn(2, 6, 7, 7)
    assert block(x).shape == x.shape
    for p in block.body.parameters():
        torch.nn.init.zeros_(p)
    block.eval()
    torch.testing.assert_close(block(x), torch.nn.functional.leaky_relu(x, 0.2))
