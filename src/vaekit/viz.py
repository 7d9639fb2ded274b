"""Pictures a person looks at: image grids (PNG via Pillow) and loss curves (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .files import atomic_path


def image_grid(images: Tensor, nrow: int, pad: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> uint8 (rows*(H+pad)+pad, nrow*(W+pad)+pad, C) laid out row by row."""
    n, c, h, w = images.shape
    rows = (n + nrow - 1) // nrow
    grid = torch.full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top:top + h, left:left + w] = images[i].detach().float().clamp(0, 1).cpu()
    return (grid.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def to_pil(array: np.ndarray, scale: int = 1):
    """An (H, W, C) uint8 array as a PIL image (grey for one channel), enlarged `scale` times by pixel
    repetition: what the run folder's PNGs and the explorer's pictures are made of."""
    from PIL import Image

    if scale > 1:
        array = array.repeat(scale, 0).repeat(scale, 1)
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def save_png(path: str | Path, array: np.ndarray, scale: int = 1) -> Path:
    """Write an (H, W, C) uint8 array as PNG, atomically; `scale` enlarges by pixel repetition."""
    return save_image(path, to_pil(array, scale), format="PNG")


def save_image(path: str | Path, img, **save_options) -> Path:
    """Write a PIL image (a GIF's first frame, with `save_all` and `append_images` in `save_options`)
    atomically: a temporary file beside `path`, renamed over it once complete."""
    path = Path(path)
    with atomic_path(path) as tmp:
        img.save(tmp, **save_options)
    return path


def save_animation(path: str | Path, frames: list[Tensor], nrow: int, scale: int = 3, ms: int = 120) -> Path:
    """An animated GIF: frame i is the grid (`image_grid`, `nrow` per row) of frames[i], (N, C, H, W) in
    [0, 1]; played forth and back, looping."""
    pictures = [to_pil(image_grid(f, nrow), scale) for f in frames]
    pictures = pictures + pictures[-2:0:-1]  # forth and back
    return save_image(path, pictures[0], format="GIF", save_all=True, append_images=pictures[1:], duration=ms,
                      loop=0)


def save_grid(path: str | Path, images: Tensor, nrow: int, scale: int | None = None) -> Path:
    """Grid of images, enlarged so small images (28x28, 8x8) are comfortable to look at."""
    if scale is None:
        scale = max(1, 64 // images.shape[-1])
    return save_png(path, image_grid(images, nrow), scale=scale)


def plot_panels(rows: list[dict], panels: list[tuple[str, list[str], dict[str, float]]], path: str | Path,
                title: str = "") -> Path:
    """Several logged terms per panel against step, with named horizontal reference lines
    (e.g. IntroVAE's KL of real / reconstructed / sampled images against the margin m)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 3.6), squeeze=False)
    for ax, (name, keys, lines) in zip(axes[0], panels):
        for key in keys:
            pts = [(r["step"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), label=key, lw=1.4)
        for label, value in lines.items():
            ax.axhline(value, color="k", ls="--", lw=1, label=label)
        _style_axis(ax, name)
    return _save_figure(fig, path, title)


def _style_axis(ax, name: str) -> None:
    ax.set_xlabel("step")
    ax.set_title(name)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _save_figure(fig, path: str | Path, title: str = "") -> Path:
    """Title and lay out a matplotlib figure, write it atomically (temp file + rename), close it."""
    import matplotlib.pyplot as plt

    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
    return path


def plot_curves(rows: list[dict], keys: list[str], path: str | Path, title: str = "",
                eval_rows: list[dict] | None = None, eval_keys: list[str] | None = None) -> Path:
    """Training curves (one panel per key) against step; evaluation points overlaid where named."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(k in r for r in rows)]
    panels = max(1, len(keys))
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        steps = [r["step"] for r in rows if key in r]
        ax.plot(steps, [r[key] for r in rows if key in r], label=f"train {key}", lw=1.4)
        for ek in eval_keys or []:
            if eval_rows and ek.endswith("/" + key):
                pts = [(r["step"], r[ek]) for r in eval_rows if ek in r]
                if pts:
                    ax.plot(*zip(*pts), "o--", label=ek, ms=4)
        _style_axis(ax, key)
    return _save_figure(fig, path, title)
