"""IntroVAE (Algorithm 1) and VAE-GAN: which weights each optimiser step may change, each group's
gradient against the paper's formula written out here, and the divergence guard."""

import pytest
import torch
import torch.nn.functional as F

import paper_losses as paper
from conftest import TINY
from vaekit.config import TrainConfig
from vaekit.errors import ConfigError, TrainingDiverged
from vaekit.models import Batch, build_model, model_config
from vaekit.models.base import GenerativeModel
from vaekit.models.introvae import UPDATES
from vaekit.nn.batchnorm import running_stats_frozen
from vaekit.train.trainer import Trainer

SHAPE = (1, 16, 16)


def make(name, **over):
    torch.manual_seed(0)
    return build_model(name, model_config(name, {**TINY, **over}), SHAPE)


def images(n=8, seed=0):
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


class _Data:
    labels = None

    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def batch(self, idx):
        return self.x[idx]


def snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def changed(before, module):
    return [not torch.equal(b, p) for b, p in zip(before, module.parameters())]


def kl_written_out(encoder, x):
    """L_REG of eq. 9 per image: 1/2 sum_j (mu^2 + sigma^2 - log sigma^2 - 1)."""
    mu, logvar = encoder(x).chunk(2, dim=1)
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)


def hinge(m, kl):
    return torch.relu(m - kl.mean())


class _LeakyTrainer(Trainer):
    """The loop the trainer's isolation replaces (pythae's, the official IntroVAE code's): one zero_grad
    per iteration, every loss back-propagated into every parameter, each optimiser stepping on what
    its parameters collected."""

    def train_step(self, batch):
        self.model.zero_grad(set_to_none=True)
        for phase_index, phase in enumerate(self.phases):
            terms = self.model.loss(batch, self.step, phase_index)
            for i, name in enumerate(phase):
                terms[name].backward(retain_graph=i + 1 < len(phase))
            for name in phase:
                self.optimizers[name].step()
        return {}


def introvae_optimiser_steps(trainer_class, update="alternating"):
    """One iteration of `trainer_class` on IntroVAE. Per optimiser step, in order: the group's name,
    whether its gradient is that of its own loss alone (torch.autograd.grad on a copy of the model at
    the weights the phase's loss was computed with), and which encoder / generator weights it changed."""
    model = make("introvae", margin=5.0, update=update)
    trainer = trainer_class(model, _Data(images(16)), TrainConfig(steps=1, batch_size=8, lr=1e-2, precision="fp32", channels_last=False), progress=False)
    states, loss = [], model.loss  # the weights each phase's loss is computed with

    def recording_loss(batch, step=0, phase=0):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return loss(batch, step, phase)
    model.loss = recording_loss
    steps = []
    for name, opt in trainer.optimizers.items():
        original = opt.step

        def step(*a, _original=original, _name=name, **k):
            grad = [p.grad.clone() for p in trainer.groups[_name]]
            before_e, before_g = snapshot(model.encoder), snapshot(model.decoder)
            out = _original(*a, **k)
            steps.append((_name, grad, changed(before_e, model.encoder), changed(before_g, model.decoder)))
            return out
        opt.step = step
    x = images(8)
    batch = Batch(x)
    torch.manual_seed(1)
    trainer.train_step(batch)

    ref = make("introvae", margin=5.0, update=update)
    groups, own = ref.optim_groups(), {}
    for phase_index, (phase, state) in enumerate(zip(model.update_phases(), states)):
        ref.load_state_dict(state)
        torch.manual_seed(1)  # phase 0 draws z, z_p as the trainer's call did; phase 1 reuses them
        terms = ref.loss(Batch(x, memo=dict(batch.memo)), 0, phase_index)
        for name in phase:
            own[name] = torch.autograd.grad(terms[name], groups[name], retain_graph=True)
    return [(name, all(torch.allclose(g, r, atol=1e-6, rtol=1e-4) for g, r in zip(grad, own[name])), enc, gen)
            for name, grad, enc, gen in steps]


def test_introvae_algorithm_1_each_step_changes_only_its_own_weights():
    """Line 10 steps phi_E on the gradient of L_E alone and changes no theta_G; line 13 steps theta_G on
    that of L_G alone (with the updated encoder) and changes no phi_E. The weights alone cannot show a
    leak (each optimiser holds only its group); the gradients can: a trainer that lets L_E's gradient
    reach the decoder's .grad (the official code's leak) fails the same check."""
    (enc_name, enc_own, enc_e, enc_g), (gen_name, gen_own, gen_e, gen_g) = introvae_optimiser_steps(Trainer)
    assert (enc_name, gen_name) == ("loss/encoder", "loss/generator")
    assert enc_own and any(enc_e) and not any(enc_g)  # encoder step: its own gradient, encoder weights only
    assert gen_own and any(gen_g) and not any(gen_e)  # generator step: likewise
    leaky = introvae_optimiser_steps(_LeakyTrainer)
    assert [(name, own) for name, own, _, _ in leaky] == [("loss/encoder", True), ("loss/generator", False)]


def test_introvae_simultaneous_update_keeps_each_gradient_to_its_own_loss():
    """Both backward passes precede both steps; L_G reaches phi_E (through Enc(X_r) and X_r = Dec(Enc(X)))
    and L_E reaches theta_G (through L_AE), so without isolation both optimisers would see a leak."""
    assert [(name, own) for name, own, _, _ in introvae_optimiser_steps(Trainer, "simultaneous")] == [
        ("loss/encoder", True), ("loss/generator", True)]
    assert [(name, own) for name, own, _, _ in introvae_optimiser_steps(_LeakyTrainer, "simultaneous")] == [
        ("loss/encoder", False), ("loss/generator", False)]


def test_introvae_gradients_are_those_of_algorithm_1():
    """Each optimiser sees exactly the gradient of eq. 11 (with ng) and, after the encoder step, of
    eq. 12 on the re-encoded X_r, X_p (line 11), computed here independently of the model's code."""
    alpha, beta, m = 0.25, 0.7, 6.0
    model = make("introvae", alpha=alpha, beta=beta, margin=m, norm="none")
    trainer = Trainer(model, _Data(images(16)), TrainConfig(steps=1, batch_size=8, lr=1e-2, precision="fp32", channels_last=False), progress=False)
    grads = {}
    for name, opt in trainer.optimizers.items():
        original = opt.step

        def step(*a, _original=original, _name=name, _params=trainer.groups[name], **k):
            grads[_name] = [p.grad.clone() for p in _params]
            if _name == "loss/generator":  # the reference for line 13 uses the updated encoder
                grads["encoder_after_step"] = snapshot(model.encoder)
            return _original(*a, **k)
        opt.step = step
    x = images(8)
    b = Batch(x)
    torch.manual_seed(1)
    trainer.train_step(b)
    z, z_p = b.memo["introvae"]

    ref = make("introvae", alpha=alpha, beta=beta, margin=m, norm="none")  # the initial weights again
    enc, dec = list(ref.encoder.parameters()), list(ref.decoder.parameters())
    torch.manual_seed(1)
    mu, logvar = ref.encoder(x).chunk(2, dim=1)
    z_ref = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    assert torch.allclose(z_ref, z)
    x_r, x_p = torch.sigmoid(ref.decoder(z_ref)), torch.sigmoid(ref.decoder(z_p))
    l_ae = 0.5 * (x_r - x).pow(2).flatten(1).sum(1).mean()
    kl_real = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)
    l_e = kl_real.mean() + alpha * (hinge(m, kl_written_out(ref.encoder, x_r.detach()))
                                    + hinge(m, kl_written_out(ref.encoder, x_p.detach()))) + beta * l_ae
    for g, r in zip(grads["loss/encoder"], torch.autograd.grad(l_e, enc)):
        assert torch.allclose(g, r, atol=1e-6, rtol=1e-4)

    with torch.no_grad():
        for p, new in zip(enc, grads["encoder_after_step"]):
            p.copy_(new)
    x_r, x_p = torch.sigmoid(ref.decoder(z)), torch.sigmoid(ref.decoder(z_p))
    l_ae = 0.5 * (x_r - x).pow(2).flatten(1).sum(1).mean()
    l_g = alpha * (kl_written_out(ref.encoder, x_r).mean() + kl_written_out(ref.encoder, x_p).mean()) + beta * l_ae
    for g, r in zip(grads["loss/generator"], torch.autograd.grad(l_g, dec)):
        assert torch.allclose(g, r, atol=1e-6, rtol=1e-4)


def test_introvae_ng_matters_for_the_encoder_gradient():
    """Eq. 11 written out in full twice, with ng(.) on X_r and X_p and without: the model's encoder
    gradient is the first, and a hundred times nearer it than the second (without ng the hinge also
    reaches phi_E through X_r = Dec(Enc(X)); at initialisation that path is small, not zero)."""
    alpha, beta, m = 0.25, 0.7, 50.0
    model = make("introvae", alpha=alpha, beta=beta, margin=m, norm="none")
    x = images(8)
    enc = list(model.encoder.parameters())
    torch.manual_seed(1)
    terms = model.loss(Batch(x))
    assert float(terms["adv/hinge_rec"].detach()) > 0 and float(terms["adv/hinge_sample"].detach()) > 0  # active
    g_model = torch.autograd.grad(terms["loss/encoder"], enc)

    def l_e(ng):
        torch.manual_seed(1)  # the model's draws: z = mu + sigma * eps, then z_p
        mu, logvar = model.encoder(x).chunk(2, dim=1)
        z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        x_r, x_p = torch.sigmoid(model.decoder(z)), torch.sigmoid(model.decoder(torch.randn_like(z)))
        stop = torch.Tensor.detach if ng else (lambda t: t)
        kl_real = 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1).sum(1)
        l_ae = 0.5 * (x_r - x).pow(2).flatten(1).sum(1).mean()  # L_AE's gradient reaches phi_E either way
        return (kl_real.mean() + alpha * (hinge(m, kl_written_out(model.encoder, stop(x_r)))
                                          + hinge(m, kl_written_out(model.encoder, stop(x_p)))) + beta * l_ae)

    def flat(grads):
        return torch.cat([g.flatten() for g in grads])
    g_model, g_ng = flat(g_model), flat(torch.autograd.grad(l_e(True), enc))
    g_no_ng = flat(torch.autograd.grad(l_e(False), enc))
    assert torch.allclose(g_model, g_ng, atol=1e-6, rtol=1e-4)
    assert (g_model - g_ng).norm() < 0.01 * (g_no_ng - g_ng).norm()  # far nearer ng than the ng-less gradient


def test_introvae_simultaneous_update_takes_both_gradients_at_the_same_weights():
    model = make("introvae", update="simultaneous", norm="none")
    assert model.update_phases() == (("loss/encoder", "loss/generator"),)
    x = images(8)
    torch.manual_seed(3)
    terms = model.loss(Batch(x))
    dec = list(model.decoder.parameters())
    expected = torch.autograd.grad(terms["loss/generator"], dec, retain_graph=True)
    trainer = Trainer(model, _Data(images(16)), TrainConfig(steps=1, batch_size=8, precision="fp32", channels_last=False), progress=False)
    grads = {}
    original = trainer.optimizers["loss/generator"].step
    trainer.optimizers["loss/generator"].step = lambda *a, **k: (grads.update(g=[p.grad.clone() for p in dec]),
                                                                 original(*a, **k))
    torch.manual_seed(3)
    trainer.train_step(Batch(x))
    for g, e in zip(grads["g"], expected):
        assert torch.allclose(g, e, atol=1e-6, rtol=1e-4)


def test_running_stats_frozen_normalises_by_the_batch_and_keeps_the_running_statistics():
    """Inside, a training-mode batch norm normalises by the batch's own statistics and back-propagates,
    also through a graph recorded before the context (IntroVAE's Enc(X)); its running statistics come
    out unchanged, and move again after."""
    for momentum in (0.1, None):  # None: the cumulative average, counted by num_batches_tracked
        torch.manual_seed(0)
        lin, bn = torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3, momentum=momentum)
        net = torch.nn.Sequential(lin, bn)
        real, fake = torch.randn(8, 3), 3 * torch.randn(8, 3) + 2
        out_real = net(real)
        stats = {k: v.clone() for k, v in bn.state_dict().items()}
        with running_stats_frozen(net):
            out_fake = net(fake)
        for k, v in bn.state_dict().items():
            assert torch.equal(v, stats[k]), k
        torch.testing.assert_close(out_fake, F.batch_norm(lin(fake), None, None, bn.weight, bn.bias, training=True))
        (out_real.pow(3).sum() + out_fake.pow(2).sum()).backward()
        assert lin.weight.grad.abs().sum() > 0 and bn.weight.grad.abs().sum() > 0
        net(fake)
        assert int(bn.num_batches_tracked) == 2 and not torch.equal(bn.running_mean, stats["running_mean"])


@pytest.mark.parametrize("update", UPDATES)
def test_introvae_encoder_running_statistics_come_from_real_images_only(update):
    """Eval mode normalises real images with the encoder's running statistics, so of the five encodes
    per iteration only Enc(X) (line 4) may move them, not those of X_r and X_p: after 6 steps (2 of
    them VAE pre-training) they are exactly those of the 6 real batches fed through the encoder at
    each step's weights, and an evaluation's KL(real) is that of such an encoder."""
    model = make("introvae", margin=5.0, update=update, pretrain_epochs=0.5, steps_per_epoch=4)
    held_out = images(16, seed=2)
    trainer = Trainer(model, _Data(images(32, seed=1)), TrainConfig(steps=6, batch_size=8, lr=1e-2, precision="fp32", channels_last=False), progress=False,
                      evaluate=lambda m, step: {"kl/real": m.encode(held_out).kl()})
    fed, train_step = [], trainer.train_step  # (the real batch, the encoder's weights when phase 0 encodes it)

    def recording_step(batch):
        fed.append((batch.x.clone(), snapshot(model.encoder)))
        return train_step(batch)
    trainer.train_step = recording_step
    trainer.fit()
    assert len(fed) == 6
    ref = make("introvae").encoder  # the initial running statistics
    with torch.no_grad():
        for x, weights in fed:
            for p, w in zip(ref.parameters(), weights):
                p.copy_(w)
            ref(x)  # training mode: one update of the running statistics
        for p, w in zip(ref.parameters(), model.encoder.parameters()):
            p.copy_(w)
        ref.eval()
        expected = kl_written_out(ref, held_out)
    for (name, got), want in zip(model.encoder.named_buffers(), ref.buffers()):
        assert torch.equal(got, want), name
    torch.testing.assert_close(trainer.run_evaluation()["kl/real"], expected)


def test_introvae_pretraining_is_a_vae_then_the_margin_switches_on():
    model = make("introvae", pretrain_epochs=1.0, steps_per_epoch=10, margin=1000.0)
    b = Batch(images(8))
    pre = model.loss(b, step=9)
    assert float(pre["adv/alpha"]) == 0.0
    assert torch.allclose(pre["loss/encoder"], pre["kl/real"] + model.config.beta * pre["recon"])
    post = model.loss(Batch(images(8)), step=10)
    assert float(post["adv/alpha"]) == model.config.alpha
    assert float(post["adv/hinge_rec"].detach()) > 0  # KLs of generated images sit far below m = 1000
    with pytest.raises(ConfigError, match="steps_per_epoch"):
        make("introvae", pretrain_epochs=1.0).loss(b, step=0)


def test_introvae_64_preset_scales_beta_by_pixels_and_pretrains_before_the_game():
    """The tested 64x64 defaults (benchmarks/results/adversarial.md): L_AE sums over pixels, so beta * pixels
    stays as at 28x28 (within 5%), the margin is the same, and the game starts after VAE pre-training."""
    small, large = model_config("introvae"), model_config("introvae_64")
    assert abs(large.beta * 64 * 64 / (small.beta * 28 * 28) - 1) < 0.05
    assert large.margin == small.margin and large.alpha == small.alpha
    assert small.pretrain_epochs == 0 and large.pretrain_epochs > 0
    model = build_model("introvae_64", model_config("introvae_64", {**TINY, "steps_per_epoch": 100}), SHAPE)
    assert float(model.loss(Batch(images(4)), step=large.pretrain_epochs * 100 - 1)["adv/alpha"]) == 0.0


def test_introvae_phase_1_needs_phase_0():
    with pytest.raises(RuntimeError, match="phase 0"):
        make("introvae").loss(Batch(images(4)), 0, 1)


@pytest.mark.parametrize("gamma", [0.0, 5.0])
def test_vaegan_groups_get_the_gradients_of_their_own_losses(gamma):
    """One trainer step: each group stepped with the gradient of its loss as sec. 3.1 writes it
    (paper_losses): encoder beta L_KL + L_llike, decoder gamma L_llike - log D(Dec(z_p)) - log D(Dec(Enc(x)))
    (eq. 2), discriminator eq. 3 alone - the learned similarity never trains the discriminator, so gamma
    is nowhere in its loss."""
    model = make("vaegan", gamma=gamma, beta=2.0, adversarial_weight=0.5, norm="none", discriminator_norm="none")
    x = images(8)
    before, model = paper.step_once(model, x, seed=2)

    torch.manual_seed(2)  # the model's draws: z = mu + sigma * eps, then z_p
    mu, logvar = before.encoder(x).chunk(2, dim=1)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    x_tilde, x_p = torch.sigmoid(before.decoder(z)), torch.sigmoid(before.decoder(torch.randn_like(z)))
    D = before.discriminator
    logit_x, maps_x = D.forward_with_features(x)
    logit_tilde, maps_tilde = D.forward_with_features(x_tilde)
    losses = paper.vaegan_losses(paper.kl_to_standard_normal(mu, logvar), paper.llike(maps_x[-1], maps_tilde[-1]),
                                 logit_x, D(x_p), logit_tilde, beta=2.0, gamma=gamma, adversarial_weight=0.5)
    paper.assert_each_group_stepped_with(model, before, losses)


def test_vaegan_discriminator_loss_does_not_reach_the_generator():
    model = make("vaegan", norm="none", discriminator_norm="none")
    terms = model.loss(Batch(images(8)))
    grads = torch.autograd.grad(terms["loss/discriminator"], list(model.decoder.parameters()) + list(model.encoder.parameters()),
                                allow_unused=True)
    assert all(g is None or not g.abs().any() for g in grads)


def test_vaegan_feature_layer_is_checked():
    with pytest.raises(ConfigError, match="feature_layer"):
        make("vaegan", feature_layer=7)


class _Exploding(GenerativeModel):
    """A loss that is ~1 until step `at`, then jumps `jump`-fold (finite: only the guard sees it)."""
    config_class = dict

    def __init__(self, at=60, jump=1e6):
        super().__init__({}, SHAPE)
        self.w = torch.nn.Parameter(torch.ones(()))
        self.at, self.jump = at, jump

    def loss(self, batch, step=0, phase=0):
        scale = 1.0 if step < self.at else self.jump
        return {"loss": scale * self.w * batch.x.mean() * 0 + scale * self.w}


def test_a_run_that_explodes_stops_with_a_clear_message_and_keeps_its_checkpoint(tmp_path):
    model = _Exploding()
    trainer = Trainer(model, _Data(images(16)), TrainConfig(steps=100, batch_size=8, lr=1e-6, checkpoint_every=50,
                                                           log_every=10), tmp_path, progress=False)
    with pytest.raises(TrainingDiverged, match=r"step 61: 'loss' = [0-9.e+]+ is over 1000 times.*checkpoint \(step 50\)"):
        trainer.fit()
    assert (tmp_path / "checkpoints" / "step-00000050" / "model.safetensors").exists()
    off = Trainer(_Exploding(), _Data(images(16)), TrainConfig(steps=100, batch_size=8, lr=1e-6, explode_factor=0),
                  progress=False)
    off.fit()  # the guard can be switched off
    assert off.step == 100


def test_the_guard_stops_a_blow_up_in_the_first_steps_but_not_ordinary_warm_up_noise(tmp_path):
    """A million-fold jump inside the 50-step warm-up is caught (factor**2); a 500-fold rise there, while
    losses are still settling, is not."""
    config = TrainConfig(steps=20, batch_size=8, lr=1e-6, log_every=5)
    with pytest.raises(TrainingDiverged, match=r"step 3: 'loss' = [0-9.e+]+ is over 1e\+06 times"):
        Trainer(_Exploding(at=2, jump=1e12), _Data(images(16)), config, progress=False).fit()
    calm = Trainer(_Exploding(at=2, jump=500.0), _Data(images(16)), config, progress=False)
    calm.fit()
    assert calm.step == 20


def test_group_lr_sets_each_optimiser_and_refuses_unknown_groups():
    model = make("vaegan")
    trainer = Trainer(model, _Data(images(16)), TrainConfig(steps=1, batch_size=8, lr=1e-3,
                                                           group_lr={"loss/discriminator": 2e-4}), progress=False)
    assert trainer.optimizers["loss/discriminator"].param_groups[0]["lr"] == 2e-4
    assert trainer.optimizers["loss/decoder"].param_groups[0]["lr"] == 1e-3
    with pytest.raises(ConfigError, match="loss/critic"):
        Trainer(model, _Data(images(16)), TrainConfig(steps=1, batch_size=8, group_lr={"loss/critic": 1e-4}),
                progress=False)


def test_group_adam_betas_set_each_optimiser_and_factor_vae_takes_kim_and_mnih_s():
    from vaekit.run import resolve_config

    model = make("vaegan")
    trainer = Trainer(model, _Data(images(16)), TrainConfig(steps=1, batch_size=8,
                                                           group_adam_betas={"loss/discriminator": [0.5, 0.9]}),
                      progress=False)
    assert trainer.optimizers["loss/discriminator"].param_groups[0]["betas"] == (0.5, 0.9)
    assert trainer.optimizers["loss/decoder"].param_groups[0]["betas"] == (0.9, 0.999)
    with pytest.raises(ConfigError, match="loss/critic"):
        Trainer(model, _Data(images(16)), TrainConfig(steps=1, batch_size=8, group_adam_betas={"loss/critic": [0.5, 0.9]}),
                progress=False)
    assert resolve_config("factor_vae").train.group_adam_betas == {"loss/discriminator": (0.5, 0.9)}


@pytest.mark.parametrize("real, rec, sample, verdict", [
    (28.0, 38.0, 36.0, "balanced"), (30.5, 32.5, 32.0, "weakly separated"), (40.0, 30.0, 31.0, "does not tell"),
    (36.0, 40.0, 41.0, "above m")])
def test_introvae_report_judges_the_theorem_1_balance(real, rec, sample, verdict):
    model = make("introvae", margin=35.0, pretrain_epochs=1.0, steps_per_epoch=10)
    rows = [{"step": s, "kl/real": 20.0 + s / 100, "kl/rec": 20.0, "kl/sample": 20.0} for s in range(1, 11)]
    rows += [{"step": s, "kl/real": real, "kl/rec": rec, "kl/sample": sample} for s in range(11, 40)]
    pre, post = model.report_notes(rows)
    assert "pre-training (10 steps): 20.10 nats" in pre and "BELOW" not in pre  # m = 35 lies above it
    assert verdict in post


def test_introvae_report_flags_a_game_that_blew_up_early():
    """The logged KLs of a 64x64 run started from random weights at lr 1e-3 (no pre-training)."""
    model = make("introvae", margin=35.0)
    rows = [{"step": 1, "kl/real": 14.8, "kl/rec": 19.3, "kl/sample": 19.4},
            {"step": 2, "kl/real": 4.2e5, "kl/rec": 1.6e13, "kl/sample": 5.9e6},
            *({"step": s, "kl/real": 30.0, "kl/rec": 40.0, "kl/sample": 38.0} for s in range(3, 40))]
    notes = model.report_notes(rows)
    assert any("kl/real reached 4.2e+05 nats (logged at step 2)" in n and "blew up" in n for n in notes)
    calm = [r for r in rows if r["step"] != 2]
    assert not any("blew up" in n for n in model.report_notes(calm))


def test_introvae_report_ignores_generated_kls_during_pretraining():
    """Benchmark 64x64 seed 1 logged KL(rec) 1.4e9 at step 8 of pre-training (alpha = 0: not trained on)."""
    model = make("introvae", margin=35.0, pretrain_epochs=1.0, steps_per_epoch=20)
    rows = [{"step": 8, "kl/real": 77.0, "kl/rec": 1.37e9, "kl/sample": 1355.9},
            *({"step": s, "kl/real": 30.0, "kl/rec": 40.0, "kl/sample": 38.0} for s in range(9, 60))]
    assert not any("blew up" in n for n in model.report_notes(rows))
    rows[0]["kl/real"] = 1e6  # the trained term blowing up is still flagged, pre-training or not
    assert any("kl/real reached 1e+06" in n for n in model.report_notes(rows))
    late = [*rows[1:], {"step": 60, "kl/real": 30.0, "kl/rec": 1.37e9, "kl/sample": 38.0}]
    assert any("kl/rec reached 1.37e+09 nats (logged at step 60)" in n for n in model.report_notes(late))


def test_cvae_gan_groups_get_the_gradients_of_the_seeds_losses_written_out():
    """One trainer step: each group stepped with the gradient of its loss as sec. 3.2 writes it
    (paper_losses), D a (k + 1)-class softmax, y_fake = k:
    L_D = CE(D(x), y) + CE(D(Dec(z, y)), y_fake) + CE(D(Dec(Enc(x, y), y)), y_fake);
    the generator's CE(D(Dec(z, y)), y) + CE(D(Dec(Enc(x, y), y)), y) in the decoder's loss beside
    gamma L_llike; the encoder's beta L_KL + L_llike."""
    k = 4
    model = make("cvae_gan", classes=k, norm="none", discriminator_norm="none", gamma=2.0, beta=3.0,
                 adversarial_weight=0.5)
    x, labels = images(8), torch.arange(8) % k
    before, model = paper.step_once(model, x, labels, seed=2)

    torch.manual_seed(2)  # the model's draws: z = mu + sigma * eps, then z_p ~ N(0, I)
    onehot = F.one_hot(labels, k).float()
    mu, logvar = before.encoder(torch.cat([x, onehot[:, :, None, None].expand(-1, -1, *SHAPE[1:])], 1)).chunk(2, 1)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    x_tilde = torch.sigmoid(before.decoder(torch.cat([z, onehot], 1)))  # Dec(Enc(x, y), y)
    x_p = torch.sigmoid(before.decoder(torch.cat([torch.randn_like(z), onehot], 1)))  # Dec(z, y)
    D = before.discriminator
    logits_x, maps_x = D.forward_with_features(x)
    logits_tilde, maps_tilde = D.forward_with_features(x_tilde)
    losses = paper.cvae_gan_losses(paper.kl_to_standard_normal(mu, logvar), paper.llike(maps_x[-1], maps_tilde[-1]),
                                   logits_x, D(x_p), logits_tilde, labels, beta=3.0, gamma=2.0, adversarial_weight=0.5)
    paper.assert_each_group_stepped_with(model, before, losses)
    # the discriminator's loss reaches neither encoder nor decoder
    terms = before.loss(Batch(x, labels))
    generator = [*before.encoder.parameters(), *before.decoder.parameters()]
    leaks = torch.autograd.grad(terms["loss/discriminator"], generator, allow_unused=True)
    assert all(g is None or not g.abs().any() for g in leaks)
    assert model.discriminator.head.out_features == k + 1
