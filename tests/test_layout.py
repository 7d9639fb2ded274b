"""train.channels_last (vaekit/layout.py): auto stores a convolutional model channels-last on a CPU, not an
MLP; evaluation in that layout gives the NCHW numbers, and hands the model back as it came."""

import pytest
import torch

from vaekit.batch import Batch
from vaekit.layout import channels_last_while, has_convolutions, resolve_channels_last
from vaekit.metrics.evaluate import evaluate_model
from vaekit.models import build_model, model_config
from vaekit.run.pictures import interpolation_grid

from conftest import tiny_settings

CPU = torch.device("cpu")


def _model(name, **over):
    torch.manual_seed(0)
    return build_model(name, model_config(name, {**tiny_settings(name, over), **over}), (1, 16, 16)).eval()


def _first_conv_weight(model):  # one with several input channels: a single one is both layouts at once
    return next(m.weight for m in model.modules()
                if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)) and m.weight.shape[1] > 1)


def test_auto_is_channels_last_for_a_convolutional_model_on_a_cpu_only():
    conv, mlp = _model("vae"), _model("vae", architecture="mlp")
    assert has_convolutions(conv) and not has_convolutions(mlp)
    assert resolve_channels_last("auto", CPU, conv) is True
    assert resolve_channels_last("auto", CPU, mlp) is False
    assert resolve_channels_last("auto", torch.device("cuda"), conv) is False
    assert resolve_channels_last(False, CPU, conv) is False and resolve_channels_last(True, CPU, mlp) is True


def test_evaluation_in_channels_last_gives_the_nchw_numbers_and_restores_the_layout(tiny_test_data):
    model = _model("vae")
    plain = evaluate_model(model, tiny_test_data, iw_samples=4, seed=0)
    with channels_last_while(model, CPU):
        w = _first_conv_weight(model)
        assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
        fast = evaluate_model(model, tiny_test_data, iw_samples=4, seed=0)
    assert _first_conv_weight(model).is_contiguous()  # given back in the layout it came in
    model.to(memory_format=torch.channels_last)  # a model trained channels-last stays so
    with channels_last_while(model, CPU):
        pass
    assert not _first_conv_weight(model).is_contiguous()
    assert fast.keys() == plain.keys()
    for k, v in plain.items():
        assert fast[k] == (v if not isinstance(v, float) else pytest.approx(v, rel=1e-4, abs=1e-6)), k


def test_a_channels_last_colour_model_reconstructs_and_interpolates():
    """Decoder outputs come out channels-last; the pictures reshape them (a .view fails on 3 channels)."""
    torch.manual_seed(0)
    model = build_model("vae", model_config("vae", tiny_settings("vae")), (3, 16, 16)).eval()
    model.to(memory_format=torch.channels_last)
    x = torch.rand(4, 3, 16, 16)
    assert model.reconstruct(x).shape == (4, 3, 16, 16)
    assert torch.isfinite(model.loss(Batch(x), 0)["loss"])
    with torch.no_grad():
        assert interpolation_grid(model, x[:2], x[2:], steps=5).shape == (2 * 7, 3, 16, 16)
