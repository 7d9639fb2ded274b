"""FeatureNet: learns a tiny labelled set, is deterministic, round-trips through safetensors + JSON,
refuses pickles and unlabelled data, and is cached per dataset and image shape."""

import dataclasses
import json

import pytest
import torch

from vaekit.data import ImageDataset
from vaekit.errors import CheckpointError, ConfigError
from vaekit.metrics.feature_net import (
    FeatureNet,
    FeatureNetRecipe,
    default_feature_net_path,
    extract_features,
    get_feature_net,
    load_feature_net,
    save_feature_net,
    train_feature_net,
)

TINY_RECIPE = FeatureNetRecipe(epochs=3, batch_size=16, lr=3e-3, widths=(8, 16, 16), feature_dim=16)
SHAPES = ["horizontal bar", "vertical bar", "square outline", "disk"]


def _shapes(n, size=16, channels=1, seed=0, split="train"):
    """One of four shapes at a random position, over faint noise: a translation-invariant task."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    labels = torch.arange(n) % 4
    images = 0.2 * torch.rand(n, size, size, generator=g)
    for i, label in enumerate(labels.tolist()):
        cy, cx = torch.randint(4, size - 4, (2,), generator=g).tolist()
        dy, dx = (yy - cy).abs(), (xx - cx).abs()
        mask = [(dy <= 0) & (dx <= 3), (dx <= 0) & (dy <= 3), torch.maximum(dy, dx) == 3,
                (dy**2 + dx**2) <= 6][label]
        images[i][mask] = 1.0
    images = (images.unsqueeze(1).expand(n, channels, size, size) * 255).round().to(torch.uint8)
    return ImageDataset("shapes", split, images.contiguous(), labels, SHAPES, "memory")


@pytest.fixture(scope="module")
def data():
    return _shapes(384), _shapes(128, seed=1, split="test")


@pytest.fixture(scope="module")
def trained(data):
    return train_feature_net(*data, recipe=TINY_RECIPE)


def test_learns_tiny_task_and_reports_info(trained, data):
    net, info = trained
    assert info["test_accuracy"] > 0.7  # chance is 0.25
    assert info["n_train"] == 384 and info["n_test"] == 128 and info["image_shape"] == [1, 16, 16]
    assert info["dataset"] == "shapes" and info["classes"] == SHAPES
    assert FeatureNetRecipe(**{**info["recipe"], "widths": tuple(info["recipe"]["widths"])}) == TINY_RECIPE
    assert info["seconds"] >= 0
    assert not net.training
    f = extract_features(net, data[1], batch_size=50)
    assert f.shape == (128, 16) and f.dtype == torch.float32
    torch.testing.assert_close(f[:10], extract_features(net, data[1].batch(torch.arange(10))))


def test_training_is_deterministic_under_the_seed(trained, data):
    again, _ = train_feature_net(*data, recipe=TINY_RECIPE)
    for (k, a), b in zip(trained[0].state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    quick = dataclasses.replace(TINY_RECIPE, epochs=1, max_train_images=32)
    other, _ = train_feature_net(*data, recipe=dataclasses.replace(quick, seed=1))
    assert not torch.equal(other.fc.weight, train_feature_net(*data, recipe=quick)[0].fc.weight)


def test_save_load_gives_identical_features(trained, data, tmp_path):
    net, info = trained
    path = tmp_path / "nets" / "shapes.safetensors"
    save_feature_net(net, info, path)
    meta = json.loads((tmp_path / "nets" / "shapes.json").read_text())
    assert meta["architecture"] == {"in_channels": 1, "num_classes": 4, "widths": [8, 16, 16], "feature_dim": 16}
    loaded, loaded_info = load_feature_net(path)
    assert loaded_info["test_accuracy"] == info["test_accuracy"]
    assert torch.equal(extract_features(loaded, data[1]), extract_features(net, data[1]))


def test_pickles_and_mismatched_weights_are_refused(trained, tmp_path):
    net, info = trained
    path = tmp_path / "net.safetensors"
    save_feature_net(net, info, path)
    torch.save(net.state_dict(), path)  # a pickle where the weights should be; vaekit must not load it
    with pytest.raises(CheckpointError, match="pickle"):
        load_feature_net(path)
    save_feature_net(FeatureNet(1, 4, (8, 16, 32), 16), info, path)  # weights of another shape
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["architecture"]["widths"] = [8, 16, 16]
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_feature_net(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="feature-net description"):
        load_feature_net(path)


def test_unlabelled_data_is_a_config_error(data):
    unlabelled = dataclasses.replace(data[0], labels=None)
    with pytest.raises(ConfigError, match="no labels.*--inception PATH"):
        train_feature_net(unlabelled, data[1], recipe=TINY_RECIPE)
    with pytest.raises(ConfigError):
        FeatureNetRecipe(epochs=0)


def test_get_feature_net_trains_once_then_loads(data, tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path))
    path = default_feature_net_path("shapes", (1, 16, 16))
    assert path == tmp_path / "feature-nets" / "shapes-1x16x16.safetensors"
    messages = []
    quick = dataclasses.replace(TINY_RECIPE, epochs=1, max_train_images=64)
    net, _ = get_feature_net(*data, progress=messages.append, recipe=quick)
    assert path.exists() and path.with_suffix(".json").exists() and any("saved" in m for m in messages)
    again, again_info = get_feature_net(*data, progress=messages.append)  # cached: the recipe is not re-applied
    assert again_info == json.loads(path.with_suffix(".json").read_text())
    assert torch.equal(extract_features(again, data[1]), extract_features(net, data[1]))
    rgb = _shapes(8, channels=3), _shapes(8, channels=3, split="test")
    with pytest.raises(CheckpointError, match="shape"):
        get_feature_net(*rgb, path=path)


def test_a_large_split_trains_on_a_uniform_sample_not_its_first_images():
    """max_train_images of a split stored class by class must still see every class."""
    data = _shapes(64)
    order = torch.argsort(data.labels, stable=True)  # sorted by class: the first 16 are all class 0
    by_class = ImageDataset("shapes", "train", data.images[order].contiguous(), data.labels[order], SHAPES, "memory")
    seen = []
    original = by_class.batch
    by_class.batch = lambda idx: (seen.append(idx.clone()), original(idx))[1]
    recipe = dataclasses.replace(TINY_RECIPE, epochs=1, max_train_images=16)
    _, info = train_feature_net(by_class, _shapes(16, seed=1, split="test"), recipe)
    used = torch.cat(seen)
    assert info["n_train"] == 16 and len(used.unique()) == 16
    assert len(by_class.labels[used].unique()) == 4
