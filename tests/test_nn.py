"""The conv encoder/decoder adapt to every supported size and channel count."""

import pytest
import torch

from vaekit.errors import ConfigError
from vaekit.nn import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, ResDecoder, ResEncoder, ResidualBlock
from vaekit.run import resolve_config


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


@pytest.mark.parametrize("shape", [(1, 64, 64), (3, 8, 8), (1, 27, 27)])
def test_mlp_encoder_decoder_round_trip_shapes(shape):
    enc, dec = MLPEncoder(shape, 10, (16, 8)), MLPDecoder(5, shape, (8, 16, 16))
    assert enc(torch.rand(2, *shape)).shape == (2, 10)
    assert dec(torch.randn(2, 5)).shape == (2, *shape)


def test_mlp_is_chen_et_al_dsprites_network():
    """Chen et al. 2018 (and their code): encoder 4096-1200-1200-2D with ReLU, decoder D-1200-1200-1200-4096
    with tanh, no normalisation; the VAE built with architecture = "mlp" is exactly that."""
    from vaekit.models import build_model

    cfg = resolve_config("btcvae", overrides=["model.architecture=mlp", "model.norm=none", "model.latent_dim=10"])
    model = build_model("btcvae", cfg.model, (1, 64, 64))
    linears = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(4096, 1200), (1200, 1200), (1200, 20)]
    linears = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(10, 1200), (1200, 1200), (1200, 1200),
                                                                   (1200, 4096)]
    acts = [type(m).__name__ for m in [*model.encoder.modules(), *model.decoder.modules()]
            if isinstance(m, (torch.nn.ReLU, torch.nn.Tanh, torch.nn.BatchNorm1d))]
    assert acts == ["ReLU", "ReLU", "Tanh", "Tanh", "Tanh"]
    batch_norm = build_model("vae", resolve_config("vae", overrides=["model.architecture=mlp"]).model, (1, 8, 8))
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in batch_norm.modules()) == 5  # the default norm


@pytest.mark.parametrize("bad", ["model.mlp_widths=[]", "model.mlp_decoder_widths=[64, 0]"])
def test_mlp_widths_refused_by_name(bad):
    with pytest.raises(ConfigError, match=bad.split("=")[0].split(".")[1]):
        resolve_config("vae", overrides=["model.architecture=mlp", bad])


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
