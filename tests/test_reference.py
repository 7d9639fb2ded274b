"""The model-independent half of sample quality (metrics/reference.py): computed once, read back from the
cache with the same numbers, and recomputed when anything it depends on changes."""

import dataclasses

import pytest
import torch

from vaekit.metrics import reference
from vaekit.metrics.feature_net import train_feature_net
from vaekit.metrics.sample_quality import knn_radii, precision_recall, sample_quality

from test_feature_net import TINY_RECIPE, _shapes


@pytest.fixture(scope="module")
def net_and_data():
    train, test = _shapes(96), _shapes(48, seed=1, split="test")
    net, _ = train_feature_net(train, test, dataclasses.replace(TINY_RECIPE, epochs=1))
    return net, train, test


def test_precision_recall_with_given_radii_is_the_same_as_without():
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(300, 5, generator=g), torch.randn(200, 5, generator=g) + 0.5
    assert precision_recall(real, fake, real_radii=knn_radii(real, 3)) == precision_recall(real, fake)
    wrong = precision_recall(real, fake, real_radii=knn_radii(real, 3) * 0.5)  # the radii are really used
    assert wrong["precision"] < precision_recall(real, fake)["precision"]
    with pytest.raises(ValueError, match="real_radii"):
        precision_recall(real, fake, real_radii=torch.ones(3))


def test_the_reference_is_computed_once_then_read_with_the_same_numbers(net_and_data, tmp_path, monkeypatch):
    monkeypatch.setenv("VAEKIT_CACHE", str(tmp_path))
    net, train, test = net_and_data
    train_x = train.batch(torch.arange(40))
    f_test, radii, numbers = reference.sample_reference(net, test, train_x, pairs=50, seed=0)
    files = list((tmp_path / "feature-nets" / "reference").glob("*.safetensors"))
    assert len(files) == 1
    # what it cached is what the metrics give when computed directly
    direct = sample_quality(f_test, reference.extract_features(net, train_x))
    assert numbers["reference/train_fd"] == pytest.approx(direct["fd"], rel=1e-9)
    assert numbers["reference/train_precision"] == direct["precision"]
    assert torch.equal(radii, knn_radii(f_test, 3))

    calls = []
    monkeypatch.setattr(reference, "extract_features", lambda *a, **k: calls.append(1))
    again = reference.sample_reference(net, test, train_x, pairs=50, seed=0)  # from the cache: nothing extracted
    assert calls == [] and again[2] == numbers
    assert torch.equal(again[0], f_test) and torch.equal(again[1], radii)


def test_a_changed_image_count_or_network_is_a_new_key(net_and_data):
    net, train, test = net_and_data
    train_x = train.batch(torch.arange(40))
    key = reference.fingerprint(net, test, train_x, 50, 0, 3)
    assert key == reference.fingerprint(net, test, train_x, 50, 0, 3)
    assert key == reference.fingerprint(net, test, train_x, 50, 0, 3, chunk=7)  # how the split is read is no part
    changed = test.images.clone()
    changed[7, 0, 3, 3] ^= 1  # one bit of one pixel of one test image
    other_test = dataclasses.replace(test, images=changed)
    assert reference.fingerprint(net, other_test, train_x, 50, 0, 3) != key
    assert reference.fingerprint(net, test, train_x[:39], 50, 0, 3) != key
    assert reference.fingerprint(net, test, train_x, 51, 0, 3) != key
    other_net = dataclasses.replace(TINY_RECIPE)  # same recipe, weights nudged
    nudged = type(net)(1, 4, other_net.widths, other_net.feature_dim)
    nudged.load_state_dict(net.state_dict())
    with torch.no_grad():
        nudged.fc.bias[0] += 1e-6
    assert reference.fingerprint(nudged, test, train_x, 50, 0, 3) != key


def test_a_dynamically_binarised_train_split_gives_the_same_reference_images_every_time(net_and_data):
    """Its pixels are drawn when read: the training images of the sample-quality floor (and so the cache
    key and the floor's numbers) must not move between two evaluations."""
    from vaekit.data.binarize import binarized
    from vaekit.metrics.evaluate import reference_train_images
    from vaekit.metrics.image_quality import dataset_mean_image

    net, train, test = net_and_data
    dynamic = binarized(train, "dynamic", "train")
    assert not torch.equal(dynamic.batch(torch.arange(40)), dynamic.batch(torch.arange(40)))  # it does draw
    first, second = reference_train_images(dynamic, 40, seed=0), reference_train_images(dynamic, 40, seed=0)
    assert torch.equal(first, second)
    assert reference.fingerprint(net, test, first, 50, 0, 3) == reference.fingerprint(net, test, second, 50, 0, 3)
    assert torch.equal(dataset_mean_image(dynamic), dataset_mean_image(dynamic))
