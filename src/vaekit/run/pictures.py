"""The pictures of a run folder and of the picture commands: reconstructions (every output stage),
samples, interpolations, traversals by KL, class grids and style transfer, completions, DRAW's canvas
over time, and the training curves."""

from __future__ import annotations

from pathlib import Path

import torch

from ..conditioning import data_classes, side_information_for_samples
from ..config import RunConfig
from ..data import fixed_sample
from ..models import GenerativeModel
from ..batch import Batch
from ..files import write_json_atomic
from ..models.base import eval_mode, inference
from .report import MODEL_PICTURES, read_jsonl
from ..viz import plot_curves, plot_panels, save_animation, save_grid


def side_of(model: GenerativeModel, x: torch.Tensor, labels: torch.Tensor | None):
    """The side information of images x with their labels (None for an unconditional model)."""
    return model.side_information(Batch(x, None if labels is None else labels.to(x.device)))


@inference  # eval mode, no gradients, the model's mode restored after
def reconstruction_rows(model: GenerativeModel, x: torch.Tensor,
                        labels: torch.Tensor | None = None) -> tuple[torch.Tensor, list[str]]:
    """Inputs, then one row per output stage of the model (coarse, refine1, ... like Cai et al.'s
    figures 6-7); stages at a lower resolution are enlarged to the input's size for display.
    A conditional model is given the images' side information. -> ((rows * n), C, H, W), row names"""
    x = x.to(model.device)
    y = side_of(model, x, labels)
    grid, names = stage_rows(model.decode_stages(model.latent_code(x, y), y), size=x.shape[-2:])
    return torch.cat([x, grid]), ["input", *names]


def stage_rows(stages: dict[str, torch.Tensor], size=None) -> tuple[torch.Tensor, list[str]]:
    """Every stage's images one row after another, enlarged to `size` (default: the largest stage)."""
    size = tuple(size) if size is not None else max((s.shape[-2:] for s in stages.values()), key=lambda hw: hw[0] * hw[1])
    rows = [s.clamp(0, 1) if tuple(s.shape[-2:]) == tuple(size) else
            torch.nn.functional.interpolate(s.clamp(0, 1), size=size, mode="nearest") for s in stages.values()]
    return torch.cat(rows), list(stages)


def _lerp(a: torch.Tensor, b: torch.Tensor, steps: int) -> torch.Tensor:
    """(P, ...) and (P, ...) -> (P * steps, ...): (1-t) a + t b for t in [0, 1]."""
    t = torch.linspace(0, 1, steps, device=a.device).view(1, steps, *([1] * (a.dim() - 1)))
    return ((1 - t) * a.unsqueeze(1) + t * b.unsqueeze(1)).flatten(0, 1)


@inference  # eval mode, no gradients, the model's mode restored after
def interpolation_grid(model: GenerativeModel, x_a: torch.Tensor, x_b: torch.Tensor, steps: int = 10,
                       labels_a: torch.Tensor | None = None, labels_b: torch.Tensor | None = None) -> torch.Tensor:
    """Each row: input a, decodes of (1-t) z_a + t z_b for t in [0, 1], input b; a conditional model's
    side information is interpolated alike (one-hot labels blend from a's class to b's)."""
    x_a, x_b = x_a.to(model.device), x_b.to(model.device)
    y_a, y_b = side_of(model, x_a, labels_a), side_of(model, x_b, labels_b)
    z_a, z_b = model.latent_code(x_a, y_a), model.latent_code(x_b, y_b)  # (P, D)
    y = None if y_a is None else _lerp(y_a, y_b, steps)
    decoded = model.decode(_lerp(z_a, z_b, steps), y).reshape(x_a.shape[0], steps, *x_a.shape[1:])
    return torch.cat([x_a.unsqueeze(1), decoded, x_b.unsqueeze(1)], 1).flatten(0, 1)


@inference  # eval mode, no gradients, the model's mode restored after
def traversal_grid(model: GenerativeModel, x_ref: torch.Tensor, x_kl: torch.Tensor, steps: int = 9,
                   span: float = 3.0, dims: int | None = None, labels_ref: torch.Tensor | None = None,
                   labels_kl: torch.Tensor | None = None) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """Latent traversals: one row per latent dimension, ordered by its mean KL(q || p(z|y)) on `x_kl`
    (most used first), each sweeping that dimension over [-span, span] standard deviations of the
    prior p(z|y) around its mean, with the others fixed at the code of `x_ref` (1 image).
    -> (rows * steps, C, H, W), dims, KL per dim"""
    x_kl = x_kl.to(model.device)
    y_kl = side_of(model, x_kl, labels_kl)
    q = model.encode(x_kl, y_kl)
    kl = q.kl_per_dim(model.prior(y_kl, len(x_kl))).mean(0).flatten()  # (D,)
    order = torch.argsort(kl, descending=True)[: dims or kl.numel()]
    x_ref = x_ref[:1].to(model.device)
    y_ref = side_of(model, x_ref, None if labels_ref is None else labels_ref[:1])
    base = model.latent_code(x_ref, y_ref).flatten(1)  # (1, D)
    prior = model.prior(y_ref, 1)
    values = torch.linspace(-span, span, steps, device=base.device)
    z = base.repeat(len(order) * steps, 1)
    for row, d in enumerate(order.tolist()):
        z[row * steps:(row + 1) * steps, d] = prior.mu[0, d] + prior.std[0, d] * values
    y = None if y_ref is None else y_ref.expand(len(z), *y_ref.shape[1:])
    return model.decode(z, y), order.tolist(), kl


LATENT_MAP_IMAGES = 500  # t-SNE's time grows with them: a few seconds at the end of a run


@torch.no_grad()
def draw_latent_map(path: Path, model: GenerativeModel, test_data, seed: int) -> None:
    """The codes (`latent_code`: posterior means, or a deterministic encoder's codes) of a fixed uniform
    sample of up to 500 test images in 2-D, by PCA and by t-SNE (scikit-learn), coloured by their label
    (dSprites: their shape) where the data has one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    idx = fixed_sample(len(test_data), min(LATENT_MAP_IMAGES, len(test_data)), seed)
    if len(idx) < 5:
        return
    codes = []
    with eval_mode(model):
        for start in range(0, len(idx), 250):
            part = idx[start:start + 250]
            x = test_data.batch(part).to(model.device)
            labels = test_data.labels[part].to(model.device) if test_data.labels is not None else None
            codes.append(model.latent_code(x, model.side_information(Batch(x, labels))).flatten(1).float().cpu())
    codes = torch.cat(codes).numpy()
    colour = (test_data.labels[idx].numpy() if test_data.labels is not None else
              test_data.factors_of(idx)[:, 0].numpy() if hasattr(test_data, "factors_of") else None)
    maps = [("PCA", PCA(n_components=2, random_state=seed).fit_transform(codes) if codes.shape[1] > 1 else None),
            ("t-SNE", TSNE(n_components=2, random_state=seed, init="pca", max_iter=500,
                           perplexity=min(30.0, (len(codes) - 1) / 3)).fit_transform(codes) if codes.shape[1] > 1 else None)]
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 4.2))
    for ax, (name, xy) in zip(axes, maps):
        if xy is None:
            ax.set_axis_off()
            continue
        # colours only where the data has labels (or factors): a colour map without them warns on the console
        points = ax.scatter(xy[:, 0], xy[:, 1], s=5, alpha=0.8,
                            **({"c": colour, "cmap": "tab10"} if colour is not None else {}))
        what = "posterior means" if model.capabilities.factorised else "the encoder's codes"
        ax.set_title(f"{name} of {len(idx)} test codes ({what})", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if colour is not None:
        fig.colorbar(points, ax=axes, shrink=0.8, label="label" if test_data.labels is not None else "shape")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def draw_run_pictures(out: Path, model: GenerativeModel, test_data, cfg: RunConfig) -> None:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        # a fixed uniform sample of the test split, not its first images: a split may be stored by class
        shown = fixed_sample(len(test_data), 16)
        labels = test_data.labels
        pick = (lambda idx: None) if labels is None else (lambda idx: labels[idx])
        grid, _ = reconstruction_rows(model, test_data.batch(shown), pick(shown))
        save_grid(out / "reconstructions.png", grid, nrow=len(shown))
        y = side_information_for_samples(model, test_data, 0, 64, cfg.train.seed)
        save_grid(out / "samples.png", model.sample(64, y), nrow=8)
        pairs = min(6, len(test_data) // 2)
        x, ends = test_data.batch(shown[:2 * pairs]), shown[:2 * pairs]
        grid = interpolation_grid(model, x[:pairs], x[pairs:], labels_a=pick(ends[:pairs]), labels_b=pick(ends[pairs:]))
        save_grid(out / "interpolations.png", grid, nrow=12)
        steps = grid.reshape(pairs, 12, *grid.shape[1:])[:, 1:-1]  # each pair's decodes along t, inputs left out
        save_animation(out / "interpolations.gif", [steps[:, t] for t in range(steps.shape[1])], nrow=pairs)
        caps = model.capabilities
        if caps.factorised:  # rows by KL on 1,000 test images, as `vaekit traverse`
            kl_idx = fixed_sample(len(test_data), 1000)
            grid, _, _ = traversal_grid(model, test_data.batch(torch.arange(1)), test_data.batch(kl_idx), steps=9,
                                        dims=10, labels_ref=pick(torch.arange(1)), labels_kl=pick(kl_idx))
            save_grid(out / "traversals.png", grid, nrow=9)
            rows = grid.reshape(-1, 9, *grid.shape[1:])  # one row per dimension
            save_animation(out / "traversals.gif", [rows[:, j] for j in range(9)], nrow=len(rows))
        if caps.posterior != "sequential":  # one code per image (DRAW's are one per glimpse)
            draw_latent_map(out / "latent_map.png", model, test_data, cfg.train.seed)
        draw_conditional_pictures(out, model, test_data, cfg.train.seed)
        if caps.output == "canvas":  # DRAW: the canvas over time, 4 reconstructions and 4 samples
            from .canvas import save_canvas_pictures

            y = side_information_for_samples(model, test_data, 0, 4, cfg.train.seed)
            save_canvas_pictures(out, model, test_data.batch(shown[:4]), side_of(model, test_data.batch(shown[:4]).to(
                model.device), pick(shown[:4])), model.prior_sample(4, y), y)
        x = test_data.batch(shown).to(model.device)
        with eval_mode(model):
            own = model.extra_pictures(x, side_of(model, x, pick(shown)))
        for stem, _, images, nrow in own:
            save_grid(out / f"model-{stem}.png", images.float().clamp(0, 1).cpu(), nrow=nrow)
        if own or (out / MODEL_PICTURES).exists():
            write_json_atomic(out / MODEL_PICTURES, [[stem, caption] for stem, caption, _, _ in own])
    rows = read_jsonl(out / "metrics.jsonl")
    eval_rows = read_jsonl(out / "eval.jsonl")
    keys = [k for k in (rows[-1] if rows else {}) if k not in ("step", "images_per_s")][:6]  # as the model logs them
    plot_curves(rows, keys, out / "loss_curves.png", title=f"{cfg.model_name} on {cfg.data.name}",
                eval_rows=eval_rows, eval_keys=[f"test/{k}" for k in keys])
    panels = model.curve_panels()  # the model's own figure (IntroVAE's fig. 5: KLs against the margin)
    if panels:
        plot_panels(rows, panels, out / "training_curves.png", title=f"{cfg.model_name} on {cfg.data.name}")


def draw_conditional_pictures(out: Path, model: GenerativeModel, test_data, seed: int) -> None:
    """A label-conditional run: samples with one row per class (the VAE/GAN survey's figures 6-7) and style
    transfer (figure 9); a run conditioned on an image part: completions of test images (figure 8)."""
    from .completion import completion_rows
    from .uses import class_grid, style_transfer_grid

    caps = model.capabilities
    if caps.label_conditional:
        classes = data_classes(test_data)
        save_grid(out / "classes.png", class_grid(model, classes, 10), nrow=10)
        idx = fixed_sample(len(test_data), 8, seed)
        grid = style_transfer_grid(model, test_data.batch(idx), test_data.labels[idx], classes)
        save_grid(out / "style_transfer.png", grid, nrow=classes + 1)
    elif caps.image_conditional:
        idx = fixed_sample(len(test_data), 8, seed)
        grid, _ = completion_rows(model, test_data.batch(idx), caps.default_completion)
        save_grid(out / "completions.png", grid, nrow=len(idx))


