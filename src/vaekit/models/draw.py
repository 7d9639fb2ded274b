"""DRAW (Gregor et al. 2015, "DRAW: A recurrent neural network for image generation"; the VAE/GAN survey's
sec. 2.4), conditional DRAW, and DRAW-GAN (the VAE/GAN survey's sec. 3.4 and 4.6).

One step t = 1 ... T, with c_0 = 0, h_dec_0 = 0 (Gregor et al., eqs. 3-8):
    x^_t = x - sigma(c_{t-1})                         the error image
    r_t = read(x, x^_t, h_dec_{t-1})                  whole images, or an N x N attention glimpse
    h_enc_t = LSTM_enc(h_enc_{t-1}, [r_t, h_dec_{t-1}])
    z_t ~ q(z_t | h_enc_t) = N(mu_t, sigma_t^2)       mu_t, log sigma_t^2 linear in h_enc_t
    h_dec_t = LSTM_dec(h_dec_{t-1}, z_t)
    c_t = c_{t-1} + write(h_dec_t)                    a dense patch, or an attention write
Loss (the VAE/GAN survey, sec. 2.4): L = L^x + L^z with L^x = -log D(x | c_T) (Bernoulli on sigma(c_T) by default)
and L^z = sum_t KL(q(z_t | h_enc_t) || N(0, I)) = 1/2 sum_t (mu_t^2 + sigma_t^2 - log sigma_t^2) - T D / 2.
Generation runs the decoder alone from z_t ~ N(0, I). Conditional DRAW feeds the one-hot label to
both LSTMs at every step (the VAE/GAN survey's sec. 2.4, like a CVAE).

The latent code of the toolkit's contract is z = (z_1, ..., z_T) flattened, (B, T * D): the prior
is N(0, I) over it and `decode(z)` is the generative model itself. The posterior is sequential: each
q(z_t | ...) depends on the draws before it through h_dec, so there is no one factorised q(z|x).
`encode` returns the stated reduction "the mean path" (every z_t set to its mean mu_t, the
Gaussians met on the way); the IWAE bound uses the model's own sequential importance weights, and
the metrics that need a factorised q(z|x) (the KL decomposition, disentanglement, traversals by KL)
say they do not apply (`factorised_posterior = False`).

DRAW-GAN puts a discriminator on the final canvas, losses (2)-(3) of the VAE/GAN survey with DRAW's encoder
and decoder as VAE-GAN's (vaekit.models.vaegan, Larsen et al.'s three groups); its reconstruction
term is the pixel likelihood -log D(x | c_T), as the VAE/GAN survey used (sec. 4.6: the Dis_l loss "did not
give satisfactory performance"), or Larsen et al.'s L_llike^{Dis_l} (`reconstruction = "features"`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..conditioning import ConditionConfig, SideInformation, classes_from_data
from ..config import applies_when, refuse_inapplicable
from ..distributions import DiagonalGaussian, StandardNormal, standard_normal_log_prob
from ..errors import ConfigError
from ..importance import IMAGES_PER_CALL, chunked_log_weights, repeat_draws
from ..nn.attention import (Attention, AttentionHead, attention_from_parameters, attentions_from_parameters,
                            read_glimpse, write_patch)
from ..precision import full_precision
from .base import Batch, GenerativeModel, inference
from .observation import LikelihoodDecoder, ObservationConfig
from .adversarial import AdversarialObjective, DiscriminatorConfig, make_discriminator


def _attends(c) -> bool:
    return c.attention


_ATTENTION = "model.attention = true"
MAX_STAGES = 16  # canvases `decode_stages` shows (evenly spaced glimpses, the last included)


@dataclass(frozen=True)
class DRAWConfig(ObservationConfig, ConditionConfig):
    """DRAW's settings; the defaults are Gregor et al.'s for binarised MNIST (their Table 3)."""

    glimpses: int = 64  # T, the number of steps
    latent_dim: int = 100  # D, the size of each z_t
    encoder_hidden: int = 256  # LSTM units of the encoder (the VAE/GAN survey's sec. 4.6: 256)
    decoder_hidden: int = 256  # LSTM units of the decoder
    attention: bool = True  # read and write through N x N Gaussian filterbanks; false: whole image, dense write
    read_size: int = field(default=2, metadata=applies_when(_attends, _ATTENTION))  # N of the read glimpse
    write_size: int = field(default=5, metadata=applies_when(_attends, _ATTENTION))  # N of the written patch

    def __post_init__(self):
        self.check_observation()
        self.check_condition()
        for name in ("glimpses", "latent_dim", "encoder_hidden", "decoder_hidden", "read_size", "write_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if self.condition not in ("none", "label"):
            raise ConfigError(f"DRAW takes side information as a class label only (model.condition = 'none' or "
                              f"'label'), got {self.condition!r}")
        if self.prior != "standard":
            raise ConfigError("DRAW's prior is N(0, I) at every step (model.prior = 'standard')")
        refuse_inapplicable(self)

    @property
    def code_size(self) -> int:
        return self.glimpses * self.latent_dim


@dataclass
class Unrolled:
    """One pass of T steps for a batch."""

    canvas: Tensor  # c_T, (B, C, H, W): the likelihood's raw parameters
    z: Tensor  # (B, T, D) the codes used
    mu: Tensor | None = None  # (B, T, D) the posterior's means (None when generating)
    logvar: Tensor | None = None
    canvases: list[Tensor] | None = None  # c_1 ... c_T, when traced
    reads: list[Attention] | None = None  # the read attention of each step (inference with attention)
    writes: list[Attention] | None = None

    def posterior(self) -> DiagonalGaussian:
        """The Gaussians q(z_t | h_enc_t) met on this pass, as one (B, T * D) DiagonalGaussian."""
        return DiagonalGaussian(self.mu.flatten(1), self.logvar.flatten(1))


def _gate_order(hidden: int, device) -> Tensor:
    """Rows of an LSTMCell's gates (i, f, g, o) taken as (i, f, o, g)."""
    return torch.cat([torch.arange(2 * hidden), torch.arange(3 * hidden, 4 * hidden),
                      torch.arange(2 * hidden, 3 * hidden)]).to(device)


def _lstm(gates: Tensor, cell: Tensor | None, hidden: int) -> tuple[Tensor, Tensor]:
    """An LSTMCell's update from its summed gates (B, 4 H) in the order (i, f, o, g); cell None is c = 0."""
    ifo, g = full_precision(gates).split([3 * hidden, hidden], 1)
    i, f, o = torch.sigmoid(ifo).chunk(3, 1)
    g = torch.tanh(g)
    cell = i * g if cell is None else torch.addcmul(f * cell, i, g)
    return o * torch.tanh(cell), cell


def _autocast_dtype(device: torch.device):
    """The dtype matrix products run in here: autocast's, or None when it is off."""
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None


@dataclass
class _Weights:
    """DRAW's weights regrouped for one pass (DRAW._regrouped): what multiplies h_dec, z, h_enc and r."""

    sizes: list[int]  # the blocks of h_dec's product: write patch, [attention parameters], [encoder gates], decoder gates
    from_dec: Tensor  # (sum sizes, H_dec)
    from_dec_bias: Tensor  # (sum sizes,) or (B, sum sizes) with a label
    from_z: Tensor  # (D, 4 H_dec)
    from_read: Tensor | None = None  # (R + H_enc, 4 H_enc): the encoder's gates of [r_t, h_enc_{t-1}]


class DRAW(LikelihoodDecoder, GenerativeModel):
    description = "DRAW: recurrent encoder and decoder adding to a canvas over T glimpses, with selective attention"
    paper = "Gregor, Danihelka, Graves, Rezende & Wierstra 2015, DRAW: A recurrent neural network for image generation"
    config_class = DRAWConfig

    def __init__(self, config: DRAWConfig, image_shape):
        super().__init__(config, image_shape)
        c = config
        self.side = SideInformation(c, image_shape)
        self.condition, self.classes = self.side.condition, self.side.classes
        channels, height, width = image_shape
        pixels = channels * height * width
        read_features = 2 * channels * c.read_size ** 2 if c.attention else 2 * pixels
        self.encoder_rnn = nn.LSTMCell(read_features + c.decoder_hidden + self.side.width, c.encoder_hidden)
        self.posterior_head = nn.Linear(c.encoder_hidden, 2 * c.latent_dim)
        self.decoder_rnn = nn.LSTMCell(c.latent_dim + self.side.width, c.decoder_hidden)
        if c.attention:
            self.read_head = AttentionHead(c.decoder_hidden, c.read_size, image_shape)
            self.write_head = AttentionHead(c.decoder_hidden, c.write_size, image_shape)
            self.write_out = nn.Linear(c.decoder_hidden, channels * c.write_size ** 2)
        else:
            self.write_out = nn.Linear(c.decoder_hidden, pixels)
        self.likelihood = c.make_likelihood()

    @property
    def capabilities(self):
        # q(z_t | x, z_<t): no one q(z|x) (see the module's docstring); the canvas over time is its picture
        return dataclasses.replace(super().capabilities, posterior="sequential", output="canvas")

    @classmethod
    def tiny_settings(cls, preset) -> dict:
        return {"latent_dim": 4, "glimpses": 3, "encoder_hidden": 8, "decoder_hidden": 8}

    @classmethod
    def settings_from_data(cls, config, facts):
        return classes_from_data(config, facts.classes)

    def make_side_information(self, batch: Batch) -> Tensor | None:
        return self.side.from_batch(batch.x, batch.y)

    # --- the recurrence ---------------------------------------------------------------------
    def encoder_parameters(self) -> list[nn.Parameter]:
        """What reads the image and infers q(z_t | h_enc_t): DRAW-GAN's encoder group."""
        heads = [self.read_head] if self.config.attention else []
        return [p for m in (self.encoder_rnn, self.posterior_head, *heads) for p in m.parameters()]

    def decoder_parameters(self) -> list[nn.Parameter]:
        """What writes the canvas (and the likelihood's learned scale): DRAW-GAN's decoder group."""
        heads = [self.write_head] if self.config.attention else []
        return [p for m in (self.decoder_rnn, self.write_out, *heads, self.likelihood) for p in m.parameters()]

    def _regrouped(self, infer: bool, y: Tensor | None) -> _Weights:
        """The layers' weights regrouped by the state they multiply, once per pass. h_dec_t feeds the write of
        step t and, at step t + 1, the read's attention and both LSTMs' gates: one product h_dec_t W^T serves
        them all, and one of h_enc_t the posterior and the encoder's next gates. The parameters (and so the
        checkpoints) stay those of the LSTMCells and linear layers. Gates are reordered (i, f, o, g) so
        that one sigmoid covers three of them; a label's share of the gates, the same at every step, is
        folded into the bias."""
        c, enc, dec = self.config, self.encoder_rnn, self.decoder_rnn
        hd, d, width = c.decoder_hidden, c.latent_dim, self.side.width
        r_in = enc.input_size - hd - width  # the encoder's input is [r_t, h_dec_{t-1}, y]
        pe, pd = _gate_order(c.encoder_hidden, enc.weight_ih.device), _gate_order(hd, dec.weight_ih.device)
        heads = ([self.write_head] + ([self.read_head] if infer else [])) if c.attention else []
        layers = [self.write_out, *(h.linear for h in heads)]
        rows, bias = [m.weight for m in layers], [m.bias for m in layers]
        gates_y = []  # y's share of the gates, (B, 4 H) per LSTM
        if infer:
            rows.append(enc.weight_ih[pe, r_in:r_in + hd])
            bias.append((enc.bias_ih + enc.bias_hh)[pe])
            if y is not None:
                gates_y.append(y @ enc.weight_ih[pe, r_in + hd:].t())
        rows.append(dec.weight_hh[pd])
        bias.append((dec.bias_ih + dec.bias_hh)[pd])
        if y is not None:
            gates_y.append(y @ dec.weight_ih[pd, d:].t())
        sizes = [len(b) for b in bias]
        if len(heads) == 2:  # the write's and the next read's attention parameters side by side: (B, 2, 5)
            sizes[1:3] = [sizes[1] + sizes[2]]
        from_dec, from_dec_bias = torch.cat(rows), torch.cat(bias)
        if y is not None:
            rest = sum(sizes[:len(sizes) - len(gates_y)])
            from_dec_bias = from_dec_bias + torch.cat([y.new_zeros(len(y), rest), *gates_y], 1)  # (B, sum sizes)
        w = _Weights(sizes, from_dec, from_dec_bias, dec.weight_ih[pd, :d].t())
        if infer:
            w.from_read = torch.cat([enc.weight_ih[pe, :r_in], enc.weight_hh[pe]], 1).t()  # of [r_t, h_enc_{t-1}]
        low = _autocast_dtype(from_dec.device)
        if low is not None:  # cast once per pass rather than at every product
            for name, value in vars(w).items():
                if isinstance(value, Tensor):
                    setattr(w, name, value.to(low))
        return w

    def unroll(self, x: Tensor | None, y: Tensor | None = None, z: Tensor | None = None, *,
               mean_path: bool = False, trace: bool = False) -> Unrolled:
        """T steps for a batch. With images x: the inference pass, z_t drawn from q(z_t | h_enc_t)
        (its mean with `mean_path`); without: generation from the given codes z (B, T * D) or (B, T, D).
        `trace` keeps every canvas and attention."""
        c = self.config
        n = len(x) if x is not None else len(z)
        device = self.device
        self.side.check(y, n)
        infer = x is not None
        if z is not None:
            z = z.reshape(n, c.glimpses, c.latent_dim)
        w = self._regrouped(infer, None if y is None else y.to(device))
        channels, height, width = self.image_shape
        he, hd, m = c.encoder_hidden, c.decoder_hidden, c.write_size
        write_cut = w.sizes[0] + (w.sizes[1] if c.attention else 0)  # the write's share of h_dec's product
        sizes = (c.write_size, c.read_size)
        # the states and cells start at 0: the first product of h_dec_0 is the biases alone
        from_dec = w.from_dec_bias.expand(n, -1).split(w.sizes, 1)
        s_enc = s_dec = read_att = None
        h_enc = torch.zeros(n, he, device=device)
        if infer and c.attention:
            read_att = attention_from_parameters(from_dec[1][:, 5:], c.read_size, height, width)
        canvas = torch.zeros(n, *self.image_shape, device=device)
        zs, mus, logvars, canvases, reads, writes = [], [], [], [], [], []
        for t in range(c.glimpses):
            last = t == c.glimpses - 1
            if infer:
                error = x - self.likelihood.mean(canvas)  # eq. 3
                if c.attention:  # eq. 27: both images through the same filterbanks in one product
                    r = read_glimpse(torch.cat([x, error], 1), read_att).flatten(1)  # (B, 2 C N N)
                else:
                    r = torch.cat([x.flatten(1), error.flatten(1)], 1)  # (B, 2 C H W)
                h_enc, s_enc = _lstm(torch.addmm(from_dec[-2], torch.cat([r, h_enc], 1), w.from_read), s_enc, he)
                mu, logvar = full_precision(self.posterior_head(h_enc)).chunk(2, 1)  # eq. 6
                mus.append(mu)
                logvars.append(logvar)
                z_t = mu if mean_path else (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu))
                if trace:
                    reads.append(read_att)
            else:
                z_t = z[:, t]
            zs.append(z_t)
            h_dec, s_dec = _lstm(torch.addmm(from_dec[-1], z_t, w.from_z), s_dec, hd)  # eq. 7
            if last:  # the last h_dec feeds the write only
                from_dec = torch.addmm(w.from_dec_bias[..., :write_cut], h_dec, w.from_dec[:write_cut].t())
                from_dec = from_dec.split(w.sizes[:2 if c.attention else 1], 1)
            else:
                from_dec = torch.addmm(w.from_dec_bias, h_dec, w.from_dec.t()).split(w.sizes, 1)
            if c.attention:  # eq. 29; the write of step t and the read of step t + 1 in one filterbank pass
                both = infer and not last
                params = from_dec[1] if both else from_dec[1][:, :5]
                atts = attentions_from_parameters(params.reshape(n, -1, 5), sizes[:2 if both else 1], height, width)
                write_att, read_att = atts[0], atts[-1]
                patch = write_patch(from_dec[0].reshape(n, channels, m, m), write_att)
            else:
                patch, write_att = from_dec[0].view(n, *self.image_shape), None
            canvas = canvas + full_precision(patch)  # eq. 8
            if trace:
                canvases.append(canvas)
                writes.append(write_att)
        stack = (lambda ts: torch.stack(ts, 1)) if infer else (lambda ts: None)
        return Unrolled(canvas, torch.stack(zs, 1), stack(mus), stack(logvars),
                        canvases if trace else None,
                        reads if trace and c.attention and infer else None,
                        writes if trace and c.attention else None)

    # --- the objective ----------------------------------------------------------------------
    def elbo_terms(self, x: Tensor, y: Tensor | None) -> tuple[dict[str, Tensor], Unrolled]:
        """L^x and L^z per image of one inference pass (the VAE/GAN survey, sec. 2.4), summed KL in closed form."""
        run = self.unroll(x, y)
        recon = -self.likelihood.log_prob(run.canvas, x)  # (B,) L^x = -log D(x | c_T)
        kl = run.posterior().kl()  # (B,) L^z = sum_t KL(q(z_t | h_enc_t) || N(0, I))
        return {"recon": recon, "kl": kl}, run

    def loss(self, batch: Batch, step: int = 0, phase: int = 0) -> dict[str, Tensor]:
        terms, _ = self.elbo_terms(batch.x, self.side_information(batch))
        recon, kl = terms["recon"], terms["kl"]
        return {"loss": (recon + kl).mean(), "recon": recon.mean(), "kl": kl.mean(), "elbo": -(recon + kl).mean()}

    def log_importance_weights(self, x: Tensor, k: int, y: Tensor | None = None, *, mask: Tensor | None = None,
                               images_per_call: int = IMAGES_PER_CALL, on_chunk=None) -> Tensor:
        """log p(x | z_1:T) + sum_t log N(z_t; 0, I) - sum_t log q(z_t | x, z_<t) for k sequential
        draws of the posterior per image (each draw a pass of the recurrence). (K, B)"""

        def prepare(x_part, y_part):
            def draw(n):
                x_rep, y_rep = repeat_draws(x_part, n), None if y_part is None else repeat_draws(y_part, n)
                run = self.unroll(x_rep, y_rep)
                z = run.z.flatten(1)
                log_px = self.likelihood.log_prob(run.canvas, x_rep, mask)
                return (log_px + standard_normal_log_prob(z) - run.posterior().log_prob(z)).view(n, len(x_part))
            return draw

        return chunked_log_weights(x, k, y, prepare, images_per_call, on_chunk)

    # --- use --------------------------------------------------------------------------------
    def prior(self, y: Tensor | None = None, n: int | None = None) -> DiagonalGaussian:
        count = n if y is None else len(y)
        if count is None:
            raise ValueError("the prior needs a batch size n or side information y")
        return StandardNormal(count, self.config.code_size, self.device)

    def encode(self, x: Tensor, y: Tensor | None = None) -> DiagonalGaussian:
        """The mean path's posteriors, (B, T * D): a reduction of the sequential q, not a factorised q(z|x)."""
        return self.unroll(x, y, mean_path=True).posterior()

    def latent_code(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        return self.unroll(x, y, mean_path=True).z.flatten(1)

    @inference
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """decode(latent_code(x)) from the one mean-path unroll: the decoder LSTM sees only z_t, so the
        canvas that pass writes is the canvas of decoding its codes again (one unroll instead of two)."""
        return self.likelihood.mean(self.unroll(x, y, mean_path=True).canvas)

    def raw_decode(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        """c_T of the codes z: what `decode` and `log_likelihood` (LikelihoodDecoder's) read D(x | c_T) from."""
        return self.unroll(None, y, z).canvas

    def stage_times(self) -> list[int]:
        """The glimpses (1-based) whose canvases `decode_stages` shows: at most MAX_STAGES, evenly spaced."""
        t = self.config.glimpses
        return sorted({round(t * (i + 1) / min(t, MAX_STAGES)) for i in range(min(t, MAX_STAGES))})

    def decode_stages(self, z: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """The canvas sigma(c_t) over time (up to MAX_STAGES glimpses, the last one the output)."""
        run = self.unroll(None, y, z, trace=True)
        return {f"t={t}": self.likelihood.mean(run.canvases[t - 1]) for t in self.stage_times()}

    def report_notes(self, rows: list[dict]) -> list[str]:
        c = self.config
        reading = (f"read and write attention with {c.read_size} x {c.read_size} and {c.write_size} x {c.write_size} "
                   "Gaussian filterbanks") if c.attention else "no attention (whole images read, dense writes)"
        return [f"DRAW: T = {c.glimpses} glimpses, z_t of {c.latent_dim} per glimpse, LSTMs of {c.encoder_hidden} / "
                f"{c.decoder_hidden} units, {reading}.",
                "The posterior is sequential, q(z_t | x, z_<t): the IWAE bound uses DRAW's own sequential importance "
                "weights; the KL decomposition, disentanglement scores and traversals by per-dimension KL need one "
                "factorised q(z|x) and do not apply. Reconstructions decode the mean path (every z_t at its mean)."]

    @inference
    def canvas_sequence(self, x: Tensor | None = None, y: Tensor | None = None, z: Tensor | None = None) -> Unrolled:
        """Every canvas and attention of reconstructing x (the mean path) or of decoding z: the pictures'."""
        return self.unroll(x, y, z, mean_path=True, trace=True)


@dataclass(frozen=True)
class DRAWGANConfig(DRAWConfig, DiscriminatorConfig):
    reconstruction: str = "pixel"  # pixel: -log D(x | c_T), as the VAE/GAN survey (sec. 4.6) | features: L_llike^{Dis_l}
    discriminator_max_channels: int = 128

    def __post_init__(self):
        super().__post_init__()
        self.check_discriminator()
        if self.reconstruction not in ("pixel", "features"):
            raise ConfigError(f"model.reconstruction must be 'pixel' or 'features', got {self.reconstruction!r}")


class DRAWGAN(AdversarialObjective, DRAW):
    description = "DRAW-GAN: DRAW with a discriminator on the final canvas, VAE-GAN's losses (2)-(3)"
    paper = "When Variational Auto-encoders meet Generative Adversarial Networks (sec. 3.4, 4.6); Gregor et al. 2015"
    config_class = DRAWGANConfig

    @classmethod
    def tiny_settings(cls, preset) -> dict:
        return {**super().tiny_settings(preset), "discriminator_channels": 4, "discriminator_max_channels": 8}

    def __init__(self, config: DRAWGANConfig, image_shape):
        super().__init__(config, image_shape)
        self.discriminator = make_discriminator(config, image_shape, self.classes + 1 if self.classes else 1,
                                                config.discriminator_max_channels)

    def optim_groups(self):
        return {"loss/encoder": self.encoder_parameters(), "loss/decoder": self.decoder_parameters(),
                "loss/discriminator": list(self.discriminator.parameters())}

    def loss(self, batch: Batch, step: int = 0, phase: int = 0) -> dict[str, Tensor]:
        y = self.side_information(batch)
        terms, run = self.elbo_terms(batch.x, y)
        x_tilde = self.likelihood.mean(run.canvas)  # Dec(Enc(x)): the final canvas
        x_p = self.decode(self.prior_sample(len(batch.x), y), y)  # Dec(z_p), z_p ~ N(0, I) at every step
        pixel = terms["recon"]
        out = self.adversarial_terms(batch.x, batch.y, terms["kl"], x_tilde, x_p,
                                     reconstruction=pixel if self.config.reconstruction == "pixel" else None)
        out["recon"] = pixel.mean()
        out["elbo"] = -(pixel + terms["kl"]).mean()
        return out
