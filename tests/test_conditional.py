"""Side information through the front door: CVAE and CVAE-GAN runs, class-conditional generation,
style transfer and image completion (CVAE from the kept half; any unconditional model by inference),
with what they measure."""

import json
import math

import pytest
import torch
from PIL import Image

from vaekit.cli.main import main
from vaekit.run.completion import complete, missing_regions
from vaekit.conditioning import keep_mask, kept_part, one_hot
from vaekit.errors import ConfigError
from vaekit.run import load_run, load_split

SMALL = ["--set", "model.latent_dim=8", "--set", "model.base_channels=16", "--set", "model.max_channels=32",
         "--set", "train.eval_every=0", "--iw-samples", "0", "--quiet"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def cvae_digits(tmp_path_factory):
    """A CVAE on the 8x8 digits, trained long enough to use its labels."""
    out = tmp_path_factory.mktemp("cond") / "cvae"
    assert main(["train", "cvae", "--data", "digits", "--steps", "300", "--out", str(out), *SMALL]) == 0
    return out


def test_samples_for_label_c_are_classified_as_c_well_above_chance(cvae_digits, capsys):
    code, out, err = run(capsys, "evaluate", cvae_digits, "--json", "--iw-samples", "20", "--iw-images", "200",
                         "--samples", "1000", "--pairs", "100", "--quiet")
    assert code == 0, err
    result = json.loads(out)
    assert result["conditional/chance_accuracy"] == pytest.approx(0.1)
    assert result["conditional/label_accuracy"] > 0.3  # chance is 0.1; ~0.58 at 300 steps
    assert sum(result[f"conditional/label_accuracy/{c}"] > 0.5 for c in range(10)) >= 4
    assert "conditional/fd/9" in result and result["conditional/fd_mean_over_classes"] > 0
    # test/iwae_nll is the K = 20 bound on -log p(x|y) of the first 200 images of the evaluation's sample:
    # 40 more such estimates, -log (1/K) sum_k w_k written out from the model's weights, put it within
    # 4 standard deviations of their mean; and it lies below -ELBO (analytic KL) of the same images by
    # more than the noise of either (E[-log w] = -ELBO; the K-draw bound is tighter)
    from vaekit.data.dataset import fixed_sample
    from vaekit.models.base import Batch

    cfg, model, _ = load_run(cvae_digits)
    test = load_split(cfg, "test")
    idx = fixed_sample(len(test), len(test))[:200]
    x, labels = test.batch(idx), test.labels[idx]
    torch.manual_seed(1)
    with torch.no_grad():
        log_w = model.log_importance_weights(x, 40 * 20, one_hot(labels, 10)).view(40, 20, 200)
        bounds = -(torch.logsumexp(log_w, 1) - math.log(20)).mean(1)  # (40,) each over the 200 images
        neg_elbo = torch.stack([sum(model.loss(Batch(x, labels))[k] for k in ("recon", "kl")) for _ in range(40)])
    assert abs(result["test/iwae_nll"] - float(bounds.mean())) < 4 * float(bounds.std()), (result, bounds)
    noise = float((bounds.var() + neg_elbo.var() / 40).sqrt())
    assert result["test/iwae_nll"] < float(neg_elbo.mean()) - 4 * noise, (result, neg_elbo)


def test_a_decoder_that_ignores_the_label_is_caught(cvae_digits):
    """The measure of the test above can fail: samples decoded with the labels zeroed are at chance."""
    from vaekit.metrics.evaluate import class_conditional_quality
    from vaekit.metrics.feature_net import extract_features, get_feature_net

    cfg, model, _ = load_run(cvae_digits)
    train, test = load_split(cfg, "train"), load_split(cfg, "test")
    net, _ = get_feature_net(train, test)
    torch.manual_seed(0)
    labels = torch.arange(1000) % 10
    y = one_hot(labels, 10)
    right, blind = model.sample(1000, y), model.sample(1000, torch.zeros_like(y) + 0.1)
    f_test = extract_features(net, test)
    acc = {name: class_conditional_quality(net, x, extract_features(net, x), f_test, test.labels, 10)
           ["conditional/label_accuracy"] for name, x in (("right", right), ("blind", blind))}
    assert acc["right"] > 0.3 and acc["blind"] < 0.2


def test_class_conditional_quality_counts_the_classes_the_samples_were_drawn_for():
    """Samples drawn for 4 training classes, scored against a test split whose labels stop at 2: a perfect
    classifier is right on every sample (the classes come from the generation, not the test labels)."""
    from vaekit.metrics.evaluate import class_conditional_quality

    class Perfect(torch.nn.Module):  # reads the class off the image's constant value
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.nn.functional.one_hot(x.flatten(1)[:, 0].round().long(), 4).float() + 0 * self.w

    fake = (torch.arange(40) % 4).float().view(40, 1, 1, 1).expand(40, 1, 4, 4)
    test_labels = torch.arange(30) % 3
    features = torch.randn(40, 3)
    out = class_conditional_quality(Perfect(), fake, features, torch.randn(30, 3), test_labels, 4)
    assert out["conditional/label_accuracy"] == 1.0 and out["conditional/chance_accuracy"] == 0.25


def test_generate_and_style_transfer_from_the_command_line(cvae_digits, capsys, tmp_path):
    names = {p.name for p in cvae_digits.iterdir()}
    assert {"classes.png", "style_transfer.png"} <= names
    assert "![classes](classes.png)" in (cvae_digits / "report.md").read_text()
    code, out, err = run(capsys, "generate", cvae_digits, "--label", 3, "-n", 16, "-o", tmp_path / "g.png")
    assert code == 0, err
    assert Image.open(tmp_path / "g.png").size == ((4 * 10 + 2) * 8, (4 * 10 + 2) * 8)  # 4 x 4 of 8 px, scaled 8x
    code, out, err = run(capsys, "style-transfer", cvae_digits, "-n", 3, "-o", tmp_path / "s.png")
    assert code == 0, err
    assert Image.open(tmp_path / "s.png").size == ((11 * 10 + 2) * 8, (3 * 10 + 2) * 8)  # image + 10 labels per row
    code, _, err = run(capsys, "generate", cvae_digits, "--label", 10, "-o", tmp_path / "bad.png")
    assert code == 2 and "--label must lie in [0, 9]" in err and not (tmp_path / "bad.png").exists()
    code, _, err = run(capsys, "complete", cvae_digits, "--keep", "left", "-o", tmp_path / "c.png")
    assert code == 2 and "label-conditional" in err


def test_style_transfer_keeps_the_code_and_changes_the_class(cvae_digits):
    """Each row decodes one code with every label: the classifier reads the column's label."""
    from vaekit.metrics.feature_net import get_feature_net
    from vaekit.run.uses import style_transfer_grid

    cfg, model, _ = load_run(cvae_digits)
    test = load_split(cfg, "test")
    net, _ = get_feature_net(load_split(cfg, "train"), test)
    idx = torch.arange(20)
    grid = style_transfer_grid(model, test.batch(idx), test.labels[idx], 10).view(20, 11, 1, 8, 8)
    predicted = net.eval()(grid[:, 1:].flatten(0, 1)).argmax(1).view(20, 10)
    assert (predicted == torch.arange(10)).float().mean() > 0.3  # chance 0.1


def test_generate_refuses_an_unconditional_run(tmp_path, capsys):
    out = tmp_path / "vae"
    assert main(["train", "vae", "--data", "digits", "--steps", "5", "--out", str(out), *SMALL]) == 0
    code, _, err = run(capsys, "generate", out, "--label", 1, "-o", tmp_path / "g.png")
    assert code == 2 and "not conditioned on class labels" in err and not (tmp_path / "g.png").exists()
    # completion of any unconditional model by inference, both methods; the kept half is the input's own
    for method in ("optimise", "iterate"):
        code, msg, err = run(capsys, "complete", out, "--keep", "top", "-n", 4, "--method", method, "--steps", 5,
                             "-o", tmp_path / f"{method}.png")
        assert code == 0, err
        assert f"method {method}" in msg and Image.open(tmp_path / f"{method}.png").size == ((4 * 10 + 2) * 8,
                                                                                             (3 * 10 + 2) * 8)
    code, _, err = run(capsys, "complete", out, "--keep", "top", "--method", "prior", "-o", tmp_path / "p.png")
    assert code == 2 and "--method prior needs" in err
    code, msg, err = run(capsys, "evaluate", out, "--json", "--iw-samples", "0", "--samples", "0", "--completion",
                         "right", "--completion-images", "50", "--quiet")
    assert code == 0, err
    result = json.loads(msg)
    assert result["completion/right/images"] == 50 and result["completion/right/method"] == "optimise"
    assert 0 <= result["completion/right/mse"] and "completion/right/baseline_mse" in result


def test_a_cvae_on_the_left_half_completes_from_it(tmp_path, capsys):
    out = tmp_path / "left"
    assert main(["train", "cvae", "--data", "digits", "--steps", "200", "--out", str(out), *SMALL,
                 "--set", "model.condition=left", "--set", "model.prior=learned"]) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    # the completed right half, the prior's mean decoded, beats the training mean's right half
    assert evaluation["completion/left/method"] == "prior"
    assert evaluation["completion/left/mse"] < evaluation["completion/left/baseline_mse"]
    assert (out / "completions.png").exists()
    code, _, err = run(capsys, "complete", out, "--keep", "left", "-n", 4, "-o", tmp_path / "c.png")
    assert code == 0, err
    code, _, err = run(capsys, "complete", out, "--keep", "right", "-o", tmp_path / "r.png")
    assert code == 2 and "from the left half, not from right" in err
    code, _, err = run(capsys, "sample", out, "-n", 4, "-o", tmp_path / "s.png")  # kept halves of test images
    assert code == 0, err


def test_completion_changes_only_the_missing_part():
    from conftest import tiny_settings
    from vaekit.models import build_model, model_config

    torch.manual_seed(0)
    x = torch.rand(3, 1, 16, 16)
    cases = (("vae", {}, ("left", "right", "top", "bottom", "tl", "tr+bl", "tl+tr+br")),
             ("cvae", {"condition": "half", "prior": "learned"}, ("left", "right", "top", "bottom")),
             ("cvae", {"condition": "quadrants"}, ("tl", "br", "tl+br", "tr+bl+br", "top", "left")))
    for name, over, keeps in cases:
        model = build_model(name, model_config(name, tiny_settings(name, over)), (1, 16, 16))
        for keep in keeps:
            done = complete(model, x, keep, steps=3)
            mask = keep_mask(keep, 16, 16).bool().expand_as(x)
            assert torch.equal(done[mask], x[mask])
            tiles = missing_regions(keep, 16, 16)
            covered = torch.zeros(16, 16)
            for rows, cols in tiles:
                covered[rows, cols] += 1
                assert not torch.equal(done[..., rows, cols], x[..., rows, cols])
            assert torch.equal(covered.bool(), ~mask[0, 0]) and int(covered.max()) == 1  # the tiles are the missing part
            assert kept_part(x, keep_mask(keep, 16, 16)).shape == (3, 2, 16, 16)


def test_kept_parts_are_halves_or_quadrant_sets_and_others_are_refused():
    assert torch.equal(keep_mask("tl+bl", 6, 6), keep_mask("left", 6, 6))
    assert int(keep_mask("tl+tr+br", 8, 8).sum()) == 48 and len(missing_regions("tl", 8, 8)) == 3
    assert len(missing_regions("tl+tr", 8, 8)) == 1 and len(missing_regions("tl+br", 8, 8)) == 2
    for bad in ("tl+tl", "tl+tr+bl+br", "middle", "", "tl+"):
        with pytest.raises(ConfigError, match="kept part"):
            keep_mask(bad, 8, 8)
    from vaekit.conditioning import QUADRANT_SETS, random_quadrant_masks

    torch.manual_seed(0)
    masks = random_quadrant_masks(2000, 8, 8)
    kept = masks.flatten(1).sum(1) / 16  # quadrants kept per image
    assert set(kept.tolist()) == {1.0, 2.0, 3.0} and len(QUADRANT_SETS) == 14
    assert len({tuple(m.flatten().tolist()) for m in masks}) == 14


def test_cvae_gan_trains_and_generates_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "gan"
    assert main(["train", "cvae_gan", "--data", "digits", "--steps", "10", "--out", str(out), *SMALL]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["lr"] == 1e-4 and saved["train"]["batch_size"] == 100  # the seed's GAN learning rate
    assert saved["model"]["classes"] == 10 and saved["classes"] == 10  # from the data
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"loss/encoder", "loss/decoder", "loss/discriminator", "adv/D_label_accuracy"} <= set(rows[-1])
    code, _, err = run(capsys, "generate", out, "--label", 7, "-n", 4, "-o", tmp_path / "g.png")
    assert code == 0, err


def test_a_label_conditional_model_on_unlabelled_data_is_refused(tmp_path, capsys):
    from conftest import blob_images

    root = tmp_path / "flat"  # an image folder without class subfolders: no labels
    root.mkdir()
    for i, img in enumerate(blob_images(20, 16)):
        Image.fromarray(img[0].numpy(), "L").save(root / f"{i:02d}.png")
    code, _, err = run(capsys, "train", "cvae", "--data", "image-folder", "--set", f"data.root={root}", "--steps", "2", "--batch-size", "4",
                       "--out", tmp_path / "x")
    assert code == 2 and "needs a dataset with class labels" in err and not (tmp_path / "x").exists()
    code, _, err = run(capsys, "train", "vae", "--data", "digits", "--steps", "2", "--out", tmp_path / "y",
                       "--set", "model.classes=3")
    assert code == 2 and "model.classes applies only when model.condition = 'label'" in err
    code, _, err = run(capsys, "train", "cvae", "--data", "digits", "--steps", "2", "--out", tmp_path / "z",
                       "--set", "model.classes=3")
    assert code == 2 and "model.classes = 3 but the data has 10 classes" in err
    code, _, err = run(capsys, "train", "btcvae", "--data", "digits", "--steps", "2", "--out", tmp_path / "w",
                       "--set", "model.condition=label", "--set", "model.prior=learned")
    assert code == 2 and "prior_term = 'tc'" in err


def test_a_cvae_on_random_quadrants_completes_from_any_of_them(tmp_path, capsys):
    """Sohn et al.'s setting: one model told 1, 2 or 3 quadrants, completing the rest from p(z|y)."""
    out = tmp_path / "quadrants"
    assert main(["train", "cvae", "--data", "digits", "--steps", "200", "--out", str(out), *SMALL,
                 "--set", "model.condition=quadrants"]) == 0
    capsys.readouterr()
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["completion/tl/method"] == "prior"
    assert evaluation["completion/tl/mse"] < evaluation["completion/tl/baseline_mse"]
    nll = {}
    for keep in ("tl+br", "tr+bl+br", "left", "tl"):
        code, msg, err = run(capsys, "evaluate", out, "--json", "--samples", "0", "--iw-samples", "20",
                             "--iw-images", "50", "--completion", keep, "--completion-images", "100", "--quiet")
        result = json.loads(msg)
        assert code == 0 and result[f"completion/{keep}/mse"] < result[f"completion/{keep}/baseline_mse"], keep
        nll[keep] = result[f"completion/{keep}/nll"]
        assert result[f"completion/{keep}/nll_images"] == 50 and math.isfinite(nll[keep])
        assert 0 < result[f"completion/{keep}/nll_se"] < 0.5 * nll[keep]  # per-image spread / sqrt(50)
        code, _, err = run(capsys, "complete", out, "--keep", keep, "-n", 4, "-o", tmp_path / "c.png")
        assert code == 0, err
    # the kept part is used: each image's missing part is likelier given its own kept part than given its
    # neighbour's (the same missing pixels, the same draws), by more than a nat and 4 standard errors of
    # the mean gap; a model blind to the kept pixels (or untrained) scores both alike (measured: 3-5 nats
    # after 200 steps, exactly 0 for one trained with the kept pixels zeroed, within 0.005 untrained)
    from vaekit.data.dataset import fixed_sample
    from vaekit.metrics.likelihood import conditional_nll

    cfg, model, _ = load_run(out)
    test = load_split(cfg, "test")
    x = test.batch(fixed_sample(len(test), len(test))[:100])
    own = model.kept_side_information
    for keep in nll:
        torch.manual_seed(0)
        right = conditional_nll(model, x, keep, 20)
        model.kept_side_information = lambda x_, mask: own(x_.roll(1, 0), mask)  # image i told image i-1's
        torch.manual_seed(0)
        wrong = conditional_nll(model, x, keep, 20)
        del model.kept_side_information
        gap = wrong - right  # (100,) nats
        assert float(gap.mean()) > max(1.0, 4 * float(gap.std()) / 10), (keep, gap.mean(), gap.std())
    code, _, err = run(capsys, "complete", out, "--keep", "tl+tr+bl+br", "-o", tmp_path / "x.png")
    assert code == 2 and "1-3 distinct quadrants" in err


def test_the_conditional_nll_with_one_draw_is_the_single_sample_bound():
    from conftest import tiny_settings
    from vaekit.metrics.likelihood import conditional_nll
    from vaekit.models import build_model, model_config

    torch.manual_seed(0)
    model = build_model("cvae", model_config("cvae", tiny_settings("cvae", {"condition": "quadrants",
                                                                              "prior": "learned"})), (1, 8, 8)).eval()
    x = torch.rand(5, 1, 8, 8)
    torch.manual_seed(3)
    got = conditional_nll(model, x, "tl+tr", 1)
    mask = keep_mask("tl+tr", 8, 8)
    y = kept_part(x, mask)
    torch.manual_seed(3)
    with torch.no_grad():
        q, prior = model.encode(x, y), model.prior(y, 5)
        z = q.sample(1)
        log_w = model.log_likelihood(x, z[0], y, mask=1 - mask) + prior.log_prob(z)[0] - q.log_prob(z)[0]
    torch.testing.assert_close(got, -log_w)
    # K = 50: -log (1/50) sum_k w_k of 50 such weights, the same draws
    torch.manual_seed(4)
    got = conditional_nll(model, x, "tl+tr", 50)
    torch.manual_seed(4)
    with torch.no_grad():
        z = q.sample(50)  # (50, 5, D)
        log_w = (torch.stack([model.log_likelihood(x, z_j, y, mask=1 - mask) for z_j in z])
                 + prior.log_prob(z) - q.log_prob(z))  # (50, 5)
    torch.testing.assert_close(got, -(torch.logsumexp(log_w, 0) - math.log(50)))
    # tighter than one draw: each image's K = 50 bound (100 repeats) lies below the mean of 5000 single-draw
    # bounds by more than 4 standard errors of the difference (measured: 0.08-0.14 nats, 9 or more of them), and
    # not below the bound of all 5000 draws beyond 4 standard errors (it may only approach it)
    torch.manual_seed(5)
    with torch.no_grad():
        single = -model.log_importance_weights(x, 5000, y, mask=1 - mask)  # (5000, 5) one-draw bounds
        bounds = conditional_nll(model, x.repeat(100, 1, 1, 1), "tl+tr", 50).view(100, 5)
    tightest = -(torch.logsumexp(-single, 0) - math.log(5000))
    se = ((single.var(0) / 5000 + bounds.var(0) / 100).sqrt(), bounds.std(0) / 10)
    assert bool((bounds.mean(0) < single.mean(0) - 4 * se[0]).all()), (bounds.mean(0), single.mean(0), se[0])
    assert bool((bounds.mean(0) > tightest - 4 * se[1]).all()), (bounds.mean(0), tightest, se[1])
