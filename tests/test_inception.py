"""FID Inception-v3: the architecture's parameter count, safetensors loading, and feature shapes."""

import pytest
import torch
from safetensors.torch import save_file

from vaekit.errors import CheckpointError
from vaekit.metrics.inception import (
    FIDInceptionV3,
    inception_features,
    load_fid_inception,
)

# torchvision's inception_v3 (1000 classes, with AuxLogits) has 27,161,264 parameters (its documented
# num_params). pytorch-fid's pool3 network drops AuxLogits and fc:
#   AuxLogits: conv0 768->128 1x1 (98,304) + BN (256); conv1 128->768 5x5 (2,457,600) + BN (1,536);
#              fc 768->1000 (769,000)                                                  = 3,326,696
#   fc:        2048->1000 (2,048,000 + 1,000)                                           = 2,049,000
# A mis-shaped layer anywhere changes the count.
FID_INCEPTION_PARAMETERS = 27_161_264 - 3_326_696 - 2_049_000  # 21,785,568


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    net = FIDInceptionV3()
    path = tmp_path_factory.mktemp("inception") / "fid_inception.safetensors"
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    tensors["fc.weight"], tensors["fc.bias"] = torch.zeros(1008, 2048), torch.zeros(1008)  # as pytorch-fid's file
    save_file(tensors, str(path))
    return path, net


def test_parameter_count_matches_torchvision_minus_aux_and_fc():
    net = FIDInceptionV3()
    assert sum(p.numel() for p in net.parameters()) == FID_INCEPTION_PARAMETERS == 21_785_568
    assert len([k for k in net.state_dict() if k.endswith("running_mean")]) == 94  # 94 BasicConv2d layers


def test_load_and_feature_shapes(weights):
    path, original = weights
    net = load_fid_inception(path)
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    for name, value in original.state_dict().items():
        assert torch.equal(net.state_dict()[name], value), name
    gray = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    rgb = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    f_gray = inception_features(net, gray, batch_size=2)
    assert f_gray.shape == (2, 2048) and torch.isfinite(f_gray).all()
    f_rgb = inception_features(net, rgb)
    assert f_rgb.shape == (2, 2048) and torch.isfinite(f_rgb).all()


def test_missing_or_misshaped_keys_are_refused(weights, tmp_path):
    _, net = weights
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    del tensors["Mixed_6b.branch7x7_2.conv.weight"]
    save_file(tensors, str(tmp_path / "missing.safetensors"))
    with pytest.raises(CheckpointError, match="lacks Mixed_6b.branch7x7_2.conv.weight"):
        load_fid_inception(tmp_path / "missing.safetensors")
    tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
    tensors["Mixed_7c.branch_pool.conv.weight"] = torch.zeros(192, 1280, 1, 1)
    save_file(tensors, str(tmp_path / "shape.safetensors"))
    with pytest.raises(CheckpointError, match="mis-shaped Mixed_7c.branch_pool.conv.weight"):
        load_fid_inception(tmp_path / "shape.safetensors")
    # blocks.* names (pytorch-fid's wrapper) are not torchvision's: refused by name
    save_file({f"blocks.0.{k}": v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "wrap.safetensors"))
    with pytest.raises(CheckpointError, match="lacks Conv2d_1a_3x3"):
        load_fid_inception(tmp_path / "wrap.safetensors")
    torch.save(net.state_dict(), tmp_path / "pickle.safetensors")
    with pytest.raises(CheckpointError, match="pickle"):
        load_fid_inception(tmp_path / "pickle.safetensors")
