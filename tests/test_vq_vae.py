"""VQ-VAE against van den Oord et al. 2017 written out: nearest-entry quantisation (eq. 1-2), the
straight-through gradient and the loss of eq. 3, the EMA codebook (appendix A.1), dead-code restarts, the
gated PixelCNN's causality, and the two stages of one run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_settings
from vaekit.batch import Batch
from vaekit.models import build_model, model_config
from vaekit.models.base import DataFacts
from vaekit.models.registry import settings_from_data
from vaekit.nn.pixelcnn import GatedPixelCNN
from vaekit.nn.quantiser import VectorQuantiser

SHAPE = (1, 16, 16)


def _model(**over):
    torch.manual_seed(0)
    return build_model("vq_vae", model_config("vq_vae", {**tiny_settings("vq_vae"), **over}), SHAPE)


def _batch(n=6, seed=0):
    return Batch(torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed)).bernoulli(), None)


def test_quantiser_takes_the_nearest_entry_and_passes_the_gradient_straight_through():
    torch.manual_seed(0)
    vq = VectorQuantiser(10, 3)
    z_e = torch.randn(2, 3, 4, 5, requires_grad=True)
    out = vq(z_e)
    flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, 3)
    expected = torch.cdist(flat, vq.codebook.detach()).argmin(1)  # eq. 2
    assert torch.equal(out["indices"].flatten(), expected)
    e = vq.codebook.detach()[expected].view(2, 4, 5, 3).permute(0, 3, 1, 2)
    assert torch.allclose(out["z_q"], e)  # the forward value is the entry (eq. 1)
    weight = torch.randn_like(e)
    (out["z_q"] * weight).sum().backward()
    assert torch.equal(z_e.grad, weight)  # dL/dz_e := dL/dz_q
    assert vq.codebook.grad is None  # the decoder's gradient does not reach the codebook


def test_loss_is_eq_3_with_its_stop_gradients():
    """-log p(x|z_q) + ||sg[z_e] - e||^2 + beta ||z_e - sg[e]||^2, summed over the grid: the value, the
    codebook's gradient 2 sum_i (e_k - z_e_i) over the vectors given entry k, and the encoder's gradient
    dRecon/dz_q + 2 beta (z_e - e) carried back through the encoder."""
    beta = 0.4
    model = _model(commitment=beta)
    batch = _batch()
    terms = model.loss(batch, 0)
    z_e = model.encoder(batch.x)
    codebook = model.quantiser.codebook.detach()
    flat = z_e.detach().permute(0, 2, 3, 1).reshape(-1, z_e.shape[1])
    k = torch.cdist(flat, codebook).argmin(1)
    e = codebook[k].view(z_e.shape[0], *z_e.shape[2:], -1).permute(0, 3, 1, 2)
    z_q = e.clone().requires_grad_(True)
    recon = F.binary_cross_entropy_with_logits(model.decoder(z_q), batch.x, reduction="none").flatten(1).sum(1)
    sq = (z_e.detach() - e).pow(2).flatten(1).sum(1)
    assert torch.allclose(terms["recon"], recon.mean(), rtol=1e-5)
    assert torch.allclose(terms["loss"], (recon + sq + beta * sq).mean(), rtol=1e-5)

    model.zero_grad()
    terms["loss"].backward()
    d_recon_dzq, = torch.autograd.grad(recon.mean(), z_q)
    manual_codebook = torch.zeros_like(codebook).index_add_(0, k, 2 * (codebook[k] - flat)) / len(batch.x)
    assert torch.allclose(model.quantiser.codebook.grad, manual_codebook, atol=1e-5)
    encoder_grad = torch.autograd.grad(z_e, list(model.encoder.parameters()),
                                       d_recon_dzq + 2 * beta * (z_e.detach() - e) / len(batch.x))
    for p, g in zip(model.encoder.parameters(), encoder_grad):
        assert torch.allclose(p.grad, g, atol=1e-5)


def test_ema_codebook_follows_appendix_a1_and_drops_the_codebook_term():
    torch.manual_seed(0)
    gamma = 0.9
    vq = VectorQuantiser(6, 2, ema=True, decay=gamma)
    z_e = torch.randn(3, 2, 2, 2)
    start = vq.codebook.detach().clone()
    out = vq(z_e)
    vq.update(z_e, out["indices"], out["counts"])
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 2)
    n = torch.bincount(out["indices"].flatten(), minlength=6).float()
    sums = torch.zeros(6, 2).index_add_(0, out["indices"].flatten(), flat)
    size = gamma * 1.0 + (1 - gamma) * n  # N_i, from one use of each entry
    m = gamma * start + (1 - gamma) * sums  # m_i
    smoothed = (size + 1e-5) / (size.sum() + 6e-5) * size.sum()
    assert torch.allclose(vq.codebook, m / smoothed.unsqueeze(1), atol=1e-6)
    assert not vq.codebook.requires_grad
    model = _model(codebook_update="ema")
    terms = model.loss(_batch(), 0)
    assert "codebook" in terms  # logged
    z_terms = terms["recon"] + model.config.commitment * terms["commitment"]
    assert torch.allclose(terms["loss"], z_terms, rtol=1e-5)  # not optimised


def test_dead_entries_restart_at_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantiser(8, 2, dead_count=0.5)
    z_e = torch.randn(2, 2, 3, 3) + 50.0  # far from every entry: one entry takes them all
    out = vq(z_e)
    vq.update(z_e, out["indices"], out["counts"])
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 2)
    used = int(out["indices"].flatten()[0])
    for k in range(8):
        if k != used:  # every restarted entry is one of the batch's vectors
            assert torch.cdist(vq.codebook.detach()[k:k + 1], flat).min() < 1e-6
    after = vq(z_e)
    assert (after["counts"] > 0).sum() > 1


def test_pixelcnn_position_sees_exactly_the_positions_before_it():
    """The logits at (r, c) depend on every code before it in raster order and on none from (r, c) on:
    the type-A first layer, the vertical stack that never sees its own row, no blind spot."""
    torch.manual_seed(0)
    net = GatedPixelCNN(5, channels=4, layers=4)
    h, w = 5, 5
    grid = torch.randint(0, 5, (1, h, w))
    for r, c in [(0, 0), (2, 2), (4, 4), (3, 0), (1, 4)]:
        x = net.embedding(grid).permute(0, 3, 1, 2).detach().requires_grad_(True)
        v, hh = x, x
        for layer in net.layers:
            v, hh = layer(v, hh)
        net.head(hh)[0, :, r, c].sum().backward()
        reach = x.grad.abs().sum(1)[0] > 0  # (h, w)
        before = torch.zeros(h, w, dtype=torch.bool)
        before.view(-1)[: r * w + c] = True
        assert torch.equal(reach, before), (r, c)


def test_pixelcnn_sample_draws_from_its_conditionals():
    torch.manual_seed(0)
    net = GatedPixelCNN(4, channels=4, layers=2)
    with torch.no_grad():
        net.head[-1].bias.copy_(torch.tensor([0.0, 0.0, 5.0, 0.0]))  # p(code 2) ~ 0.98 everywhere
        net.head[-1].weight.zero_()
    grid = net.sample(50, 3, 3)
    assert grid.shape == (50, 3, 3) and (grid == 2).float().mean() > 0.9
    log_p = net.log_prob(grid)
    assert torch.allclose(log_p, torch.log_softmax(net.head[-1].bias, 0)[grid].flatten(1).sum(1))


def test_the_run_splits_its_steps_between_the_vq_vae_and_the_prior():
    config = settings_from_data("vq_vae", model_config("vq_vae", tiny_settings("vq_vae")),
                                DataFacts(1000, 100, train_steps=400))
    assert config.prior_start == 300  # the last prior_fraction = 1/4 trains the prior
    model = build_model("vq_vae", config, SHAPE).train()
    first, second = model.loss(_batch(), 299), model.loss(_batch(), 300)
    assert "loss" in first and "loss/prior" not in first
    assert "loss/prior" in second and "loss" not in second
    model.eval()
    assert {"loss", "loss/prior", "elbo"} <= set(model.loss(_batch(), 0))


def test_the_trainer_rests_a_group_whose_loss_is_absent(tmp_path):
    from vaekit.config import TrainConfig
    from vaekit.data import ImageDataset
    from vaekit.train import Trainer
    from conftest import blob_images

    data = ImageDataset("blobs", "train", blob_images(32, 16), None, None, "memory")
    model = build_model("vq_vae", model_config("vq_vae", {**tiny_settings("vq_vae"), "prior_start": 2}), SHAPE)
    trainer = Trainer(model, data, TrainConfig(steps=2, batch_size=8, eval_every=0, log_every=1, device="cpu"),
                      progress=False)
    prior_before = [p.detach().clone() for p in model.prior_net.parameters()]
    trainer.fit()  # steps 0, 1: the VQ-VAE alone
    assert all(torch.equal(a, b) for a, b in zip(prior_before, model.prior_net.parameters()))
    vq_before = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("prior_net")}
    trainer.config = TrainConfig(steps=4, batch_size=8, eval_every=0, log_every=1, device="cpu")
    trainer.fit()  # steps 2, 3: the prior alone, the VQ-VAE (its EMA statistics too) frozen
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in vq_before.items())
    assert not all(torch.equal(a, b) for a, b in zip(prior_before, model.prior_net.parameters()))


def test_encode_gives_indices_and_sampling_decodes_the_prior_grid():
    model = _model().eval()
    x = _batch().x
    indices = model.encode(x)
    assert indices.dtype == torch.int64 and indices.shape == (6, *model.grid)
    assert torch.allclose(model.decode_indices(indices), model.reconstruct(x), atol=1e-6)
    caps = model.capabilities
    assert caps.discrete and caps.bound is None and "point mass" in caps.no_bound_reason


@pytest.mark.parametrize("update", ["gradient", "ema"])
def test_codebook_use_is_logged(update):
    terms = _model(codebook_update=update).loss(_batch(), 0)
    assert 1.0 <= float(terms["perplexity"]) <= 8.0 and 1 <= float(terms["codes_used"]) <= 8
