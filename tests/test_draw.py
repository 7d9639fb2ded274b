"""DRAW, conditional DRAW and DRAW-GAN: the attention filterbanks, the recurrence, the loss and its
importance weights against the equations (Gregor et al. 2015; the seed's sec. 2.4, 3.4), the
pictures and commands of a run, and short runs on real data."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

import paper_losses as paper
from conftest import tiny_settings
from vaekit.cli.main import main
from vaekit.metrics.likelihood import iwae_bound
from vaekit.models import build_model, model_config
from vaekit.models.base import Batch
from vaekit.nn.attention import (attention_from_parameters, attentions_from_parameters, filterbank, read_glimpse,
                                 write_patch)

SHAPE = (1, 12, 10)  # not square: the two axes of the filterbanks differ


def make(name="draw", shape=SHAPE, **over):
    torch.manual_seed(0)
    return build_model(name, model_config(name, {**tiny_settings(name, over), **over}), shape)


def images(n, shape=SHAPE, seed=0):
    return torch.rand(n, *shape, generator=torch.Generator().manual_seed(seed))


# --- attention ----------------------------------------------------------------------------------

def test_each_filterbank_row_sums_to_one_and_follows_the_gaussian_formula():
    g = torch.Generator().manual_seed(0)
    params = torch.randn(7, 5, generator=g) * 2
    att = attention_from_parameters(params, 4, 12, 10)
    for f in (att.f_x, att.f_y):
        torch.testing.assert_close(f.sum(-1), torch.ones(f.shape[:2]))
    # eqs. 22-26 written out for image 0: centre, stride, means, unnormalised Gaussians
    gx_, gy_, log_var, log_delta, _ = params[0]
    gx = (10 + 1) / 2 * (gx_ + 1)
    delta = (max(12, 10) - 1) / (4 - 1) * log_delta.exp()
    mu = gx + (torch.arange(1, 5) - 4 / 2 - 0.5) * delta
    e = torch.exp(-(torch.arange(1, 11)[None] - mu[:, None]) ** 2 / (2 * log_var.exp()))
    torch.testing.assert_close(att.f_x[0], e / e.sum(1, keepdim=True))
    assert float(att.centre_y[0]) == pytest.approx((12 + 1) / 2 * (float(gy_) + 1))


def test_reading_with_n_the_image_size_unit_stride_and_tiny_variance_returns_the_image():
    x = images(3, (2, 9, 9))
    n = 9  # square images: delta = (9 - 1)/(9 - 1) * delta~ = 1 with delta~ = 1
    params = torch.tensor([[0.0, 0.0, math.log(1e-3), 0.0, 0.0]]).repeat(3, 1)
    att = attention_from_parameters(params, n, 9, 9)
    torch.testing.assert_close(read_glimpse(x, att), x, atol=1e-5, rtol=0)
    torch.testing.assert_close(write_patch(x, att), x, atol=1e-5, rtol=0)  # and writing puts it back
    # a wider variance blurs: no longer the image
    blurred = read_glimpse(x, attention_from_parameters(params + torch.tensor([0, 0, 6.0, 0, 0]), n, 9, 9))
    assert (blurred - x).abs().max() > 0.1


def test_intensity_scales_the_read_and_divides_the_write():
    x = images(2, (1, 8, 8))
    base = torch.tensor([[0.1, -0.2, 0.0, -0.5, 0.0]]).repeat(2, 1)
    brighter = base + torch.tensor([0, 0, 0, 0, math.log(3.0)])
    a, b = attention_from_parameters(base, 3, 8, 8), attention_from_parameters(brighter, 3, 8, 8)
    torch.testing.assert_close(read_glimpse(x, b), 3 * read_glimpse(x, a))
    w = torch.rand(2, 1, 3, 3)
    torch.testing.assert_close(write_patch(w, b), write_patch(w, a) / 3)


def test_filterbank_of_one_filter_is_centred():
    f = filterbank(torch.tensor([5.0]), torch.tensor([1.0]), torch.tensor([0.01]), 1, 9)
    assert int(f[0, 0].argmax()) == 4  # pixel 5 of 1..9


# --- the recurrence and the loss ----------------------------------------------------------------

@pytest.mark.parametrize("attention", [False, True])
def test_the_canvas_is_the_sum_of_writes_and_the_encoder_reads_the_error_image(attention):
    """Gregor et al.'s eqs. 3-8 written out with the model's own layers, against `unroll`."""
    model = make(attention=attention, glimpses=3)
    x = images(4)
    torch.manual_seed(1)
    run = model.unroll(x, trace=True)
    torch.manual_seed(1)
    c = model.config
    h_enc = s_enc = torch.zeros(4, c.encoder_hidden)
    h_dec = s_dec = torch.zeros(4, c.decoder_hidden)
    canvas = torch.zeros(4, *SHAPE)
    for t in range(c.glimpses):
        error = x - torch.sigmoid(canvas)
        if attention:
            att = model.read_head(h_dec)
            r = torch.cat([read_glimpse(x, att).flatten(1), read_glimpse(error, att).flatten(1)], 1)
        else:
            r = torch.cat([x.flatten(1), error.flatten(1)], 1)
        h_enc, s_enc = model.encoder_rnn(torch.cat([r, h_dec], 1), (h_enc, s_enc))
        mu, logvar = model.posterior_head(h_enc).chunk(2, 1)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        h_dec, s_dec = model.decoder_rnn(z, (h_dec, s_dec))
        w = model.write_out(h_dec)
        if attention:
            n = c.write_size
            canvas = canvas + write_patch(w.view(4, 1, n, n), model.write_head(h_dec))
        else:
            canvas = canvas + w.view(4, *SHAPE)
        torch.testing.assert_close(run.canvases[t], canvas)
        torch.testing.assert_close(run.z[:, t], z)
    torch.testing.assert_close(run.canvas, canvas)


def _reference_unroll(model, x, y=None):
    """Gregor et al.'s eqs. 3-8 and 19-29 written out plainly, with the model's own LSTMCells and linear
    layers called as modules, the filterbanks as exp(...) divided by their row sums, read and write as
    einsums: what DRAW.unroll (regrouped products, batched filterbanks) must reproduce. -> c_T, z, mu, logvar"""
    c = model.config
    b, (channels, height, width) = len(x), model.image_shape

    def attention(linear, n, h_dec):
        gx_, gy_, log_var, log_delta, log_gamma = linear(h_dec).unbind(1)
        gx, gy = (width + 1) / 2 * (gx_ + 1), (height + 1) / 2 * (gy_ + 1)  # eqs. 22-23
        delta = (max(width, height) - 1) / max(n - 1, 1) * log_delta.exp()  # eq. 24
        offsets = torch.arange(1, n + 1) - n / 2 - 0.5

        def bank(centre, size):  # eqs. 19-20, 25-26
            e = torch.exp(-(torch.arange(1, size + 1)[None, None] - (centre[:, None] + offsets * delta[:, None])[..., None]) ** 2
                          / (2 * log_var.exp()[:, None, None]))
            return e / e.sum(-1, keepdim=True)
        return bank(gx, width), bank(gy, height), log_gamma.exp()

    extra = [] if y is None else [y]
    h_enc = s_enc = torch.zeros(b, c.encoder_hidden)
    h_dec = s_dec = torch.zeros(b, c.decoder_hidden)
    canvas = torch.zeros(b, channels, height, width)
    zs, mus, logvars = [], [], []
    for _ in range(c.glimpses):
        error = x - torch.sigmoid(canvas)
        if c.attention:
            f_x, f_y, gamma = attention(model.read_head.linear, c.read_size, h_dec)
            read = [gamma[:, None, None, None] * torch.einsum("bjh,bchw,biw->bcji", f_y, im, f_x) for im in (x, error)]
            r = torch.cat([g.flatten(1) for g in read], 1)  # eq. 27
        else:
            r = torch.cat([x.flatten(1), error.flatten(1)], 1)
        h_enc, s_enc = model.encoder_rnn(torch.cat([r, h_dec, *extra], 1), (h_enc, s_enc))
        mu, logvar = model.posterior_head(h_enc).chunk(2, 1)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        h_dec, s_dec = model.decoder_rnn(torch.cat([z, *extra], 1), (h_dec, s_dec))
        w = model.write_out(h_dec)
        if c.attention:
            f_x, f_y, gamma = attention(model.write_head.linear, c.write_size, h_dec)
            w = w.view(b, channels, c.write_size, c.write_size)
            canvas = canvas + torch.einsum("bjh,bcji,biw->bchw", f_y, w, f_x) / gamma[:, None, None, None]  # eq. 29
        else:
            canvas = canvas + w.view(b, channels, height, width)
        zs.append(z), mus.append(mu), logvars.append(logvar)
    return canvas, *(torch.stack(v, 1) for v in (zs, mus, logvars))


REFERENCE_CASES = {  # (model, shape, settings): non-square, colour, N of one, a label, no attention
    "draw 12x10": ("draw", SHAPE, {"glimpses": 5}),
    "draw colour": ("draw", (3, 9, 9), {"glimpses": 4, "read_size": 3, "write_size": 1}),
    "draw equal grids": ("draw", (1, 8, 8), {"glimpses": 3, "read_size": 4, "write_size": 4}),
    "conditional": ("conditional_draw", SHAPE, {"glimpses": 4}),
    "no attention": ("draw", SHAPE, {"glimpses": 3, "attention": False}),
}


def _against_reference(name, shape, settings):
    model = make(name, shape, **settings)
    x = (images(6, shape, seed=5) > 0.5).float()
    y = F.one_hot(torch.arange(6) % model.classes, model.classes).float() if model.classes else None
    labels = None if y is None else torch.arange(6) % model.classes
    torch.manual_seed(4)
    canvas, z, mu, logvar = _reference_unroll(model, x, y)
    recon = F.binary_cross_entropy_with_logits(canvas, x, reduction="none").flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum((1, 2))
    log_w = -recon - 0.5 * (z.pow(2) + math.log(2 * math.pi)).sum((1, 2)) \
        + 0.5 * (((z - mu) ** 2 / logvar.exp()) + logvar + math.log(2 * math.pi)).sum((1, 2))
    torch.manual_seed(4)
    terms = model.loss(Batch(x, labels))
    torch.manual_seed(4)
    with torch.no_grad():
        weights = model.log_importance_weights(x, 1, y)[0]
    return {"loss": (terms["loss"], (recon + kl).mean()), "kl": (terms["kl"], kl.mean()),
            "iwae weights": (weights, log_w.detach())}


@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_loss_and_importance_weights_match_the_equations_written_out(case):
    """The regrouped recurrence (one product per state, the write's and the next read's filterbanks built
    together, both images read in one product) computes what the paper's equations written plainly do."""
    for key, (got, want) in _against_reference(*REFERENCE_CASES[case]).items():
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4, msg=lambda m, key=key: f"{case} {key}: {m}")


def test_the_reference_comparison_notices_a_broken_filterbank(monkeypatch):
    """The comparison above can fail: unnormalised filter rows (eq. 26's Z_X, Z_Y dropped), or the write's
    and the next read's attention parameters swapped, are caught."""
    import vaekit.nn.attention as attention

    def unnormalised(mu, variance, size):
        a = torch.arange(1, size + 1, device=mu.device, dtype=mu.dtype)
        return torch.exp(-(a - mu[..., None]).pow(2) / (2 * variance[..., None]))

    with monkeypatch.context() as m:
        m.setattr(attention, "_rows", unnormalised)
        got, want = _against_reference(*REFERENCE_CASES["draw 12x10"])["loss"]
        assert not torch.allclose(got, want, rtol=1e-3)
    real = attention.attentions_from_parameters
    with monkeypatch.context() as m:
        m.setattr("vaekit.models.draw.attentions_from_parameters", lambda p, sizes, h, w: real(p.flip(1), sizes, h, w))
        got, want = _against_reference(*REFERENCE_CASES["draw 12x10"])["loss"]
        assert not torch.allclose(got, want, rtol=1e-3)


def test_several_attentions_at_once_are_each_the_single_one():
    params = torch.randn(5, 3, 5, generator=torch.Generator().manual_seed(1))
    for shape in ((12, 10), (9, 9)):
        together = attentions_from_parameters(params, (2, 5, 1), *shape)
        for j, n in enumerate((2, 5, 1)):
            alone = attention_from_parameters(params[:, j], n, *shape)
            for field in ("f_x", "f_y", "gamma", "centre_x", "centre_y", "stride", "variance"):
                torch.testing.assert_close(getattr(together[j], field), getattr(alone, field))


def test_draw_keeps_the_parameter_names_of_its_checkpoints():
    """The regrouped products are made from the LSTMCells and linear layers at each pass: a run folder
    written before them loads."""
    model = make(glimpses=2)
    assert sorted(model.state_dict()) == sorted(
        [f"{rnn}.{p}" for rnn in ("encoder_rnn", "decoder_rnn") for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        + [f"{m}.{p}" for m in ("posterior_head", "write_out", "read_head.linear", "write_head.linear")
           for p in ("weight", "bias")])


def test_the_summed_kl_is_the_closed_form_per_step_and_the_loss_is_recon_plus_kl():
    model = make(glimpses=4)
    x = (images(5) > 0.5).float()
    torch.manual_seed(3)
    terms = model.loss(Batch(x))
    torch.manual_seed(3)
    run = model.unroll(x)
    mu, logvar = run.mu, run.logvar  # (B, T, D)
    T, D = mu.shape[1:]
    closed = 0.5 * (mu.pow(2) + logvar.exp() - logvar).sum((1, 2)) - T * D / 2  # the seed's L^z
    recon = F.binary_cross_entropy_with_logits(run.canvas, x, reduction="none").flatten(1).sum(1)
    torch.testing.assert_close(terms["kl"], closed.mean())
    torch.testing.assert_close(terms["recon"], recon.mean())
    torch.testing.assert_close(terms["loss"], (recon + closed).mean())


def test_the_iwae_bound_with_k_1_is_draws_own_elbo_estimate_and_tightens_with_k():
    model = make(glimpses=3).eval()
    x = (images(6, seed=4) > 0.5).float()
    with torch.no_grad():
        # K = 1, draw by draw: log p(x|z) + log p(z) - log q(z) of the same sequential draws as the loss's
        torch.manual_seed(7)
        w1 = model.log_importance_weights(x, 1)[0]
        torch.manual_seed(7)
        run = model.unroll(x)
        z = run.z.flatten(1)
        log_q = run.posterior().log_prob(z)
        log_p = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1)
        log_px = -F.binary_cross_entropy_with_logits(run.canvas, x, reduction="none").flatten(1).sum(1)
        torch.testing.assert_close(w1, log_px + log_p - log_q)
        # its mean over draws is the ELBO (analytic KL) within Monte-Carlo error
        torch.manual_seed(8)
        many = model.log_importance_weights(x, 400)  # (K, B)
        torch.manual_seed(8)
        elbo = -torch.stack([model.loss(Batch(x))["loss"] for _ in range(50)]).mean()
        se = float(many.mean(1).std()) / math.sqrt(400) + 1e-3
        assert abs(float(many.mean()) - float(elbo)) < 6 * se + 0.05 * abs(float(elbo)) ** 0.5
        bound = {k: float(iwae_bound(many[:k * (400 // k)].view(400 // k, k, -1).transpose(0, 1)
                                     .reshape(k, -1)).mean()) for k in (1, 10, 100)}
    assert bound[1] < bound[10] < bound[100]  # tighter (higher log p(x)) with more draws


def test_iwae_weights_are_the_same_whatever_the_chunking(monkeypatch):
    """Column i of the (K, B) weights is image i's, however the images and draws are cut into calls.
    Exactly, on the deterministic path (every z_t at its mean): each image's weight is then one number,
    written out from its own unroll, and the five images' numbers lie far apart (against the tolerance),
    so a chunk's columns permuted or shifted, or chunks put back in another order, cannot pass. With the
    noise on, every draw is fresh (no call repeats another's) and each image's mean log weight agrees
    between two cuts within Monte-Carlo error."""
    model = make(glimpses=2).eval()
    x = images(5, seed=2)
    k = 6
    with torch.no_grad():
        own = []
        for i in range(5):  # image i alone, z_t = mu_t: log p(x|z) + log N(z; 0, I) - log q(z|x)
            run = model.unroll(x[i:i + 1], mean_path=True)
            z = run.z.flatten(1)
            log_px = -F.binary_cross_entropy_with_logits(run.canvas, x[i:i + 1], reduction="none").sum()
            own.append(log_px - 0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(1) - run.posterior().log_prob(z))
        own = torch.cat(own)  # (5,)
        gaps = (own[:, None] - own[None]).abs() + torch.eye(5) * 1e9
        assert float(gaps.min()) > 0.01  # a hundred times the tolerance below: each image's weight tells it apart
        with monkeypatch.context() as m:
            m.setattr(torch, "randn_like", torch.zeros_like)  # z_t = mu_t + sigma_t * 0
            # 1 and 2 images per call cut the images into chunks of 1 and of 2 + 2 + 1, 3 into 3 + 2 with
            # one draw per call; 7 and 10 keep the five together, 1 and 2 draws per call; 1000 all at once
            for per_call in (1, 2, 3, 7, 10, 1000):
                w = model.log_importance_weights(x, k, images_per_call=per_call)
                torch.testing.assert_close(w, own.expand(k, 5), msg=f"images_per_call={per_call}")
        means = {}
        for per_call in (3, 1000):
            torch.manual_seed(0)
            w = model.log_importance_weights(x, 400, images_per_call=per_call)  # (400, 5)
            assert all(len(w[:, i].unique()) == 400 for i in range(5))  # no draw repeated across calls
            means[per_call] = (w.mean(0), w.std(0) / 20)  # each image's mean and its standard error
    (a, se_a), (b, se_b) = means[3], means[1000]
    assert bool(((a - b).abs() < 5 * (se_a ** 2 + se_b ** 2).sqrt()).all()), (a - b, se_a, se_b)


def test_generation_runs_the_decoder_alone_and_decode_stages_ends_at_the_output():
    model = make(glimpses=5).eval()
    z = model.prior_sample(3)
    assert z.shape == (3, 5 * model.config.latent_dim)
    stages = model.decode_stages(z)
    assert list(stages) == [f"t={t}" for t in range(1, 6)]
    torch.testing.assert_close(stages["t=5"], model.decode(z))
    long = make(glimpses=64)
    assert len(long.stage_times()) == 16 and long.stage_times()[-1] == 64


@pytest.mark.parametrize("attention", [True, False])
def test_reconstruct_is_the_decode_of_the_mean_path_codes(attention):
    """DRAW's reconstruct takes the mean-path unroll's own canvas: the decoder LSTM sees only z_t, so it is
    decode(latent_code(x)) without decoding again."""
    model = make(glimpses=4, attention=attention).eval()
    x = images(5)
    torch.testing.assert_close(model.reconstruct(x), model.decode(model.latent_code(x)), atol=1e-5, rtol=1e-5)


def test_draw_says_its_posterior_is_not_factorised():
    model = make()
    assert model.capabilities.posterior == "sequential" and model.capabilities.bound == "p(x)"
    with pytest.raises(Exception, match="sequential"):
        build_model("msvae", model_config("msvae", {"base": "draw", "base_settings": tiny_settings("draw")}), SHAPE)


def test_draw_refuses_side_information_it_cannot_take():
    with pytest.raises(Exception, match="class label only"):
        model_config("draw", {"condition": "left"})
    with pytest.raises(Exception, match="applies only when"):
        model_config("draw", {"attention": False, "read_size": 3})


# --- DRAW-GAN ----------------------------------------------------------------------------------

@pytest.mark.parametrize("reconstruction", ["pixel", "features"])
def test_draw_gan_groups_step_with_the_gradients_of_losses_2_and_3_written_out(reconstruction):
    """Sec. 3.4: DRAW as VAE-GAN's black-box generator, losses (2)-(3) as written out in paper_losses, with
    DRAW's L^x = -log D(x | c_T) (sec. 4.6) or L_llike^{Dis_l} as the reconstruction and L^z as L_KL."""
    model = make("draw_gan", glimpses=2, discriminator_norm="none", beta=2.0, gamma=3.0, adversarial_weight=0.5,
                 reconstruction=reconstruction)
    B = 6
    x = (images(B) > 0.5).float()
    before, model = paper.step_once(model, x, seed=2)

    torch.manual_seed(2)  # the draws the model makes: the posterior's, then z_p
    run = before.unroll(x)
    x_tilde = torch.sigmoid(run.canvas)  # Dec(Enc(x)): the final canvas's means
    x_p = before.decode(torch.randn(B, before.config.code_size))  # Dec(z_p), z_p ~ N(0, I) at every step
    D = before.discriminator
    logit_x, maps_x = D.forward_with_features(x)
    logit_tilde, maps_tilde = D.forward_with_features(x_tilde)
    rec = (paper.bernoulli_nll(run.canvas, x) if reconstruction == "pixel"
           else paper.llike(maps_x[-1], maps_tilde[-1]))
    losses = paper.vaegan_losses(paper.kl_to_standard_normal(run.mu, run.logvar), rec, logit_x, D(x_p), logit_tilde,
                                 beta=2.0, gamma=3.0, adversarial_weight=0.5)
    paper.assert_each_group_stepped_with(model, before, losses)


# --- a run: pictures, commands --------------------------------------------------------------------

def _digits_run(tmp_path, name, steps, extra=()):
    out = tmp_path / name
    rc = main(["train", name, "--data", "digits", "--steps", str(steps), "--out", str(out), "--quiet",
               "--set", "model.glimpses=4", "--set", "model.latent_dim=8", "--set", "model.encoder_hidden=64",
               "--set", "model.decoder_hidden=64", "--set", "train.batch_size=64", "--set", "train.eval_every=0",
               *[a for kv in extra for a in ("--set", kv)]])
    assert rc == 0
    return out


def test_a_draw_run_holds_the_canvas_over_time_and_its_commands_show_it(tmp_path, capsys):
    from PIL import Image

    out = _digits_run(tmp_path, "draw", 3)
    gif = Image.open(out / "canvas" / "samples.gif")
    assert gif.n_frames == 4  # one frame per glimpse
    for kind in ("sample", "reconstruction"):
        assert all((out / "canvas" / f"{kind}-{i}.png").exists() for i in range(4))
    strip = Image.open(out / "canvas" / "reconstruction-0.png").convert("RGB")
    colours = {strip.getpixel((i, j)) for i in range(strip.width) for j in range(strip.height)}
    assert (230, 40, 40) in colours and (40, 200, 60) in colours  # read and write boxes drawn
    report = (out / "report.md").read_text()
    assert "canvas/samples.gif" in report and "do not apply" in report
    assert not (out / "traversals.png").exists()
    result = json.loads((out / "evaluation.json").read_text())
    assert "test/iwae_nll" in result and not any(k.startswith(("decomposition/", "disentanglement/")) for k in result)
    assert main(["sample", str(out), "--stages", "-n", "3", "-o", str(tmp_path / "s.png")]) == 0
    assert "t=1, t=2, t=3, t=4" in capsys.readouterr().out
    assert main(["reconstruct", str(out), "-n", "3", "-o", str(tmp_path / "r.png")]) == 0
    assert "input, t=1" in capsys.readouterr().out
    assert main(["traverse", str(out), "-o", str(tmp_path / "t.png")]) == 2
    assert "sequential" in capsys.readouterr().err


def test_conditional_draw_samples_for_label_c_are_classified_as_c_above_chance(tmp_path, capsys):
    """After a short run on the 8x8 digits, a classifier trained on the real training images labels
    the samples generated for each class with that class far above chance (1/10)."""
    from sklearn.linear_model import LogisticRegression

    from vaekit.run import load_run, load_split

    out = _digits_run(tmp_path, "conditional_draw", 400, ["train.lr=3e-3"])
    cfg, model, _ = load_run(out)
    train = load_split(cfg, "train")
    x = train.batch(torch.arange(len(train))).flatten(1).numpy()
    clf = LogisticRegression(max_iter=2000).fit(x, train.labels.numpy())
    torch.manual_seed(0)
    labels = torch.arange(10).repeat_interleave(30)
    samples = model.sample(len(labels), F.one_hot(labels, 10).float())
    accuracy = float((torch.from_numpy(clf.predict(samples.flatten(1).numpy())) == labels).float().mean())
    assert accuracy > 0.5, accuracy
    assert main(["generate", str(out), "--label", "3", "-n", "4", "-o", str(tmp_path / "g.png")]) == 0
