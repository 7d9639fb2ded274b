"""DRAW's canvas over time as pictures: a PNG strip per sequence and an animated GIF of several,
with the read (red) and write (green) attention boxes drawn (Gregor et al. 2015, figures 1, 3, 7)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..viz import save_image

READ_COLOUR, WRITE_COLOUR = (230, 40, 40), (40, 200, 60)
STRIP_COLUMNS = 16  # canvases per row of a strip; a long sequence wraps


def canvas_frames(model, x: Tensor | None = None, y: Tensor | None = None, z: Tensor | None = None):
    """sigma(c_t) for t = 1..T of reconstructing x (the mean path) or decoding z, and the attention
    boxes of each step. -> frames (T, B, C, H, W) in [0, 1], reads and writes (T, B, 4) or None"""
    run = model.canvas_sequence(x, y, z)
    frames = torch.stack([model.likelihood.mean(c) for c in run.canvases]).clamp(0, 1).cpu()
    boxes = (lambda atts: None if not atts else torch.stack([a.boxes() for a in atts]).cpu())
    return frames, boxes(run.reads), boxes(run.writes)


def _tile(image: Tensor, read: Tensor | None, write: Tensor | None, scale: int):
    """One canvas (C, H, W) as an RGB PIL image enlarged `scale` times, its boxes drawn."""
    from PIL import Image, ImageDraw

    array = (image.float().clamp(0, 1) * 255).round().to(torch.uint8)
    array = array.expand(3, -1, -1) if array.shape[0] == 1 else array[:3]
    tile = Image.fromarray(array.permute(1, 2, 0).numpy(), "RGB").resize(
        (image.shape[-1] * scale, image.shape[-2] * scale), Image.NEAREST)
    draw = ImageDraw.Draw(tile)
    w, h = tile.size
    # a grid reaching past the image is drawn along its edge: the write box one pixel inside the read
    # box's limits, so that both stay visible when both cover the whole canvas
    for box, colour, inset in ((write, WRITE_COLOUR, 1), (read, READ_COLOUR, 0)):
        if box is not None:
            x0, y0, x1, y1 = (float(v) * scale for v in box)
            x0, x1 = (min(max(v, inset), w - 1 - inset) for v in (x0, x1))
            y0, y1 = (min(max(v, inset), h - 1 - inset) for v in (y0, y1))
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=1)
    return tile


def _sheet(tiles: list, columns: int, pad: int = 2):
    from PIL import Image

    w, h = tiles[0].size
    rows = (len(tiles) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet.paste(tile, (pad + c * (w + pad), pad + r * (h + pad)))
    return sheet


def _scale(frames: Tensor) -> int:
    return max(1, 112 // frames.shape[-1])


def save_strip(path: str | Path, frames: Tensor, reads: Tensor | None, writes: Tensor | None, index: int) -> Path:
    """Sequence `index`'s canvases t = 1..T left to right (wrapping every STRIP_COLUMNS), boxes drawn."""
    s = _scale(frames)
    tiles = [_tile(frames[t, index], None if reads is None else reads[t, index],
                   None if writes is None else writes[t, index], s) for t in range(len(frames))]
    return save_image(path, _sheet(tiles, min(STRIP_COLUMNS, len(tiles))), format="PNG")


def save_animation(path: str | Path, frames: Tensor, reads: Tensor | None, writes: Tensor | None,
                   frame_ms: int = 120, hold_ms: int = 1500) -> Path:
    """An animated GIF: frame t shows every sequence's canvas at step t side by side; the last is held."""
    s = _scale(frames)
    sheets = [_sheet([_tile(frames[t, b], None if reads is None else reads[t, b],
                            None if writes is None else writes[t, b], s) for b in range(frames.shape[1])],
                     frames.shape[1]) for t in range(len(frames))]
    durations = [frame_ms] * (len(sheets) - 1) + [hold_ms]
    return save_image(path, sheets[0], format="GIF", save_all=True, append_images=sheets[1:], duration=durations,
                      loop=0)


def save_canvas_pictures(out: Path, model, x: Tensor, y_x: Tensor | None, z: Tensor, y_z: Tensor | None) -> list[str]:
    """canvas/: the reconstruction of test images x and the generation from prior codes z over time,
    a strip per sequence and an animation of each kind. -> the files written, relative to `out`"""
    folder = out / "canvas"
    written = []
    for kind, frames in (("reconstruction", canvas_frames(model, x=x.to(model.device), y=y_x)),
                         ("sample", canvas_frames(model, y=y_z, z=z))):
        images, reads, writes = frames
        for b in range(images.shape[1]):
            written.append(save_strip(folder / f"{kind}-{b}.png", images, reads, writes, b))
        written.append(save_animation(folder / f"{kind}s.gif", images, reads, writes))
    return [str(p.relative_to(out)) for p in written]
