"""What the explorer page asks the trained models for, each answer a JSON-able dict with pictures as
PNG data URIs. Every request is checked and bounded here (`RequestError`: a 4xx with a message); the
models run in eval mode, one request at a time."""

from __future__ import annotations

import base64
import io
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..run.compare import compare_runs
from ..conditioning import HALVES, one_hot, side_information_for_samples
from ..data import fixed_sample
from ..errors import VaekitError
from ..batch import Batch
from ..models.base import eval_mode
from ..run.report import read_jsonl
from ..viz import image_grid, to_pil

MAX_IMAGES = 64  # images one request may decode
MAX_STEPS = 32  # interpolation steps
MAX_DIMS = 64  # latent dimensions one decode may set
MAX_VALUE = 10.0  # a slider's reach, in prior standard deviations
SLIDER_DIMS = 8  # the most used dimensions the page offers sliders for
KL_IMAGES = 500  # test images whose posteriors order the dimensions
# the run-folder files the page may show (nothing else of the folder, and nothing outside it, is served)
RUN_FILES = ("loss_curves.png", "training_curves.png", "latent_map.png", "report.html")


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def png(images: torch.Tensor, nrow: int, scale: int | None = None) -> str:
    """(N, C, H, W) in [0, 1] -> a PNG data URI of their grid, enlarged for small images."""
    array = image_grid(images.detach().float().cpu(), nrow, pad=1 if len(images) > 1 else 0)
    buffer = io.BytesIO()
    to_pil(array, scale or max(1, 96 // images.shape[-1])).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def integer(params: dict, name: str, low: int, high: int, default: int | None = None) -> int:
    """Query parameter `name` as an integer in [low, high], or a 400 that says what is wrong."""
    raw = params.get(name)
    if raw is None:
        if default is None:
            raise RequestError(400, f"missing parameter {name!r}")
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise RequestError(400, f"{name} must be an integer, got {str(raw)[:40]!r}") from None
    if not low <= value <= high:
        raise RequestError(400, f"{name} must lie in [{low}, {high}], got {value}")
    return value


def numbers(params: dict, name: str, count: int | None = None, limit: float = MAX_VALUE) -> list[float]:
    raw = params.get(name, "")
    parts = [p for p in str(raw).split(",") if p != ""]
    if len(parts) > MAX_DIMS:
        raise RequestError(413, f"{name}: at most {MAX_DIMS} values per request")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise RequestError(400, f"{name} must be comma-separated numbers") from None
    if any(not math.isfinite(v) or abs(v) > limit for v in values):
        raise RequestError(400, f"{name}: every value must be finite and within ±{limit:g}")
    if count is not None and len(values) != count:
        raise RequestError(400, f"{name} needs {count} values, got {len(values)}")
    return values


@dataclass
class ExplorerRun:
    """One run the explorer was started with: its model, test split and what the page offers for it."""

    index: int
    path: Path
    cfg: object
    model: object
    saved: dict
    test: object
    dims: list[int] = field(default_factory=list)  # the slider dimensions, most used first
    dim_kl: list[float] = field(default_factory=list)

    latent_size: int = 0
    stage_names: list[str] = field(default_factory=list)

    def _y(self, labels: torch.Tensor):
        """Side information for label-conditional models (None otherwise; image parts come from images)."""
        if not self.model.capabilities.label_conditional:
            return None
        return one_hot(labels, self.model.classes).to(self.model.device)

    def describe(self) -> dict:
        m = self.model
        caps = m.capabilities
        # the panels the page shows follow the record: completion of the parts a model conditioned on an
        # image part was trained on, or of any half or a drawn region by inference for an unconditional one
        completion = list(caps.completion_keeps()) if caps.image_conditional else \
            [*HALVES, "draw"] if not caps.conditional else []
        return {"id": self.index, "name": self.path.name, "path": str(self.path), "model": self.cfg.model_name,
                "data": self.cfg.data.name, "condition": caps.condition, "classes": m.classes,
                "class_names": self.saved.get("class_names") or [str(c) for c in range(m.classes)],
                "latent_size": self.latent_size, "dims": self.dims, "dim_kl": self.dim_kl,
                "dims_by": {"none": "code variance (no posterior)", "factorised": "KL(q || p)",
                            "sequential": "KL along the mean path (the posterior is sequential)"}[caps.posterior],
                "test_images": len(self.test), "image_shape": self.saved["image_shape"],
                "stages": len(self.stage_names) > 1,
                "canvas": caps.output == "canvas", "completion": completion,
                "files": [f for f in RUN_FILES if (self.path / f).exists()]}


class Explorer:
    """The runs `vaekit serve` was started with, and every request the page makes of them."""

    def __init__(self, run_dirs: list[str | Path], device: str = "cpu"):
        from ..run import load_run, load_split

        if not run_dirs:
            raise VaekitError("name at least one run folder")
        self.lock = threading.Lock()
        self.runs: list[ExplorerRun] = []
        for i, d in enumerate(run_dirs):
            cfg, model, saved = load_run(d, device)
            run = ExplorerRun(i, Path(d).resolve(), cfg, model, saved, load_split(cfg, "test"))
            run.dims, run.dim_kl = self._used_dimensions(run)
            with eval_mode(model):  # the code's size and the output stages, from one sample
                y = side_information_for_samples(model, run.test, 0, 1)
                z = model.prior_sample(1, y)
                run.latent_size, run.stage_names = int(z.flatten(1).shape[1]), list(model.decode_stages(z, y))
            self.runs.append(run)
        self.comparison = compare_runs([r.path for r in self.runs])

    # --- helpers ---------------------------------------------------------------------------------
    def run(self, index: str) -> ExplorerRun:
        try:
            i = int(index)
        except ValueError:
            raise RequestError(404, f"no run {index[:20]!r}") from None
        if not 0 <= i < len(self.runs):
            raise RequestError(404, f"no run {i}; this explorer serves runs 0..{len(self.runs) - 1}")
        return self.runs[i]

    @staticmethod
    @torch.no_grad()
    def _used_dimensions(run: ExplorerRun) -> tuple[list[int], list[float]]:
        """The latent dimensions by mean KL(q || p) over a fixed sample of test images (by the variance of
        the codes for a model without a posterior), the SLIDER_DIMS most used."""
        m, test = run.model, run.test
        idx = fixed_sample(len(test), min(KL_IMAGES, len(test)))
        x = test.batch(idx).to(m.device)
        y = m.side_information(Batch(x, None if test.labels is None else test.labels[idx].to(m.device)))
        with eval_mode(m):
            if m.capabilities.posterior != "none":
                q = m.encode(x, y)
                score = q.kl_per_dim(m.prior(y, len(x))).mean(0).flatten()
            else:
                score = m.latent_code(x, y).flatten(1).var(0)
        order = torch.argsort(score, descending=True)[:SLIDER_DIMS]
        return order.tolist(), [round(float(score[d]), 4) for d in order]

    def _image(self, run: ExplorerRun, params: dict, name: str = "image") -> tuple[torch.Tensor, torch.Tensor | None]:
        i = integer(params, name, 0, len(run.test) - 1)
        x = run.test.batch(torch.tensor([i])).to(run.model.device)
        labels = None if run.test.labels is None else run.test.labels[[i]].to(run.model.device)
        return x, labels

    def _label(self, run: ExplorerRun, params: dict) -> torch.Tensor | None:
        if not run.model.capabilities.label_conditional:
            if "label" in params:
                raise RequestError(400, "this model is not conditioned on a class label")
            return None
        return torch.tensor([integer(params, "label", 0, run.model.classes - 1, 0)])

    # --- the requests --------------------------------------------------------------------------
    def runs_info(self) -> dict:
        columns, rows = self.comparison
        return {"runs": [r.describe() for r in self.runs],
                "comparison": {"columns": [{"key": k, "title": t, "lower_is_better": lower} for k, t, lower in columns],
                               "rows": rows}}

    def curves(self, run: ExplorerRun) -> dict:
        rows = read_jsonl(run.path / "metrics.jsonl")
        keys = [k for k in (rows[-1] if rows else {}) if k not in ("step", "images_per_s")][:8]
        return {"keys": keys, "steps": [r["step"] for r in rows],
                "values": {k: [r.get(k) for r in rows] for k in keys},
                "evaluation": _evaluation(run.path)}

    def test_image(self, run: ExplorerRun, params: dict) -> dict:
        x, labels = self._image(run, params)
        return {"image": png(x, 1), "label": None if labels is None else int(labels[0])}

    def decode(self, run: ExplorerRun, params: dict) -> dict:
        """The code of test image `image` (or the prior's mean, image=-1) with dimensions `dims` set to
        `values` prior standard deviations from the prior's mean, decoded (with `label`)."""
        m = run.model
        size = run.latent_size
        dims = [int(d) for d in numbers(params, "dims", limit=size)]
        if any(not 0 <= d < size or d != int(d) for d in dims):
            raise RequestError(400, f"dims must be latent dimensions in [0, {size - 1}]")
        values = numbers(params, "values", len(dims))
        label = self._label(run, params)
        with self.lock, eval_mode(m):
            image = integer(params, "image", -1, len(run.test) - 1, -1)
            y = None
            if image >= 0:
                x, labels = self._image(run, params)
                if label is not None:
                    labels = label.to(m.device)
                y = m.side_information(Batch(x, labels))
                z = m.latent_code(x, y).flatten(1).clone()
            else:
                y = None if label is None else run._y(label)
                if m.capabilities.image_conditional:
                    raise RequestError(400, "a model conditioned on an image part decodes from a test image (image >= 0)")
                z = m.prior(y, 1).mode().clone()
            prior = m.prior(y, 1)
            for d, v in zip(dims, values):
                z[0, d] = prior.mu[0, d] + prior.std[0, d] * v
            return {"image": png(m.decode(z, y), 1)}

    def sample(self, run: ExplorerRun, params: dict) -> dict:
        m = run.model
        n = integer(params, "n", 1, MAX_IMAGES, 16)
        seed = integer(params, "seed", 0, 2**31 - 1, 0)
        label = self._label(run, params)
        with self.lock, eval_mode(m), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if label is not None:
                y = run._y(label.repeat(n))
            else:
                y = side_information_for_samples(m, run.test, 0, n, seed)
            x = m.sample(n, y)
            out = {"image": png(x, max(1, int(math.ceil(math.sqrt(n)))))}
            if m.capabilities.image_conditional and y is not None:
                out["kept"] = png(y[:, :-1] * y[:, -1:] + 0.5 * (1 - y[:, -1:]), max(1, int(math.ceil(math.sqrt(n)))))
            return out

    def interpolate(self, run: ExplorerRun, params: dict) -> dict:
        from ..run.pictures import interpolation_grid

        m = run.model
        steps = integer(params, "steps", 2, MAX_STEPS, 10)
        xa, la = self._image(run, params, "a")
        xb, lb = self._image(run, params, "b")
        with self.lock:
            grid = interpolation_grid(m, xa, xb, steps=steps, labels_a=la, labels_b=lb)
        return {"image": png(grid, steps + 2)}

    def style(self, run: ExplorerRun, params: dict) -> dict:
        from ..run.uses import style_transfer_grid

        if not run.model.capabilities.label_conditional:
            raise RequestError(400, "style transfer needs a label-conditional model")
        x, labels = self._image(run, params)
        with self.lock:
            grid = style_transfer_grid(run.model, x, labels.cpu(), run.model.classes)
        return {"image": png(grid, run.model.classes + 1)}

    def complete(self, run: ExplorerRun, params: dict, body: dict | None) -> dict:
        """Test image `image` with a part kept: `keep` (a half or quadrants), or a hand-drawn `mask`
        (the body's H x W list of 0/1, 1 kept) for an unconditional model; its completion."""
        from ..run.completion import completion_method, fill_missing, inference_method
        from ..conditioning import keep_mask
        from ..errors import ConfigError

        m = run.model
        x, _ = self._image(run, params)
        h, w = x.shape[-2:]
        keep = params.get("keep", "left")
        steps = integer(params, "steps", 1, 200, 50)
        try:
            if keep == "draw":
                if m.capabilities.conditional:
                    raise RequestError(400, "a hand-drawn mask needs an unconditional model (a conditional one "
                                            "completes the parts it was trained on)")
                mask = _mask(body, h, w).to(x)
                method = inference_method(m)
            else:
                method = completion_method(m, keep)
                mask = keep_mask(keep, h, w, device=x.device)
        except ConfigError as e:
            raise RequestError(400, str(e)) from None
        with self.lock, torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            done = fill_missing(m, x, mask, method, mean=True, steps=steps)
        shown = mask * x + (1 - mask) * 0.5
        return {"kept": png(shown, 1), "completion": png(done, 1), "truth": png(x, 1), "method": method}

    def stages(self, run: ExplorerRun, params: dict) -> dict:
        from ..run.pictures import stage_rows

        m = run.model
        n = integer(params, "n", 1, 16, 8)
        seed = integer(params, "seed", 0, 2**31 - 1, 0)
        label = self._label(run, params)
        with self.lock, eval_mode(m), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            y = run._y(label.repeat(n)) if label is not None else side_information_for_samples(m, run.test, 0, n, seed)
            grid, names = stage_rows(m.decode_stages(m.prior_sample(n, y), y))
        return {"image": png(grid, n), "stages": names}

    def canvas(self, run: ExplorerRun, params: dict) -> dict:
        """DRAW: every canvas of a sample (seed) or of reconstructing test image `image`, with the boxes."""
        from ..run.canvas import canvas_frames

        m = run.model
        if m.capabilities.output != "canvas":
            raise RequestError(400, "only DRAW models have a canvas")
        label = self._label(run, params)
        with self.lock, torch.random.fork_rng(devices=[]):
            if "image" in params:
                x, labels = self._image(run, params)
                y = m.side_information(Batch(x, labels if label is None else label.to(m.device)))
                frames, reads, writes = canvas_frames(m, x=x, y=y)
            else:
                torch.manual_seed(integer(params, "seed", 0, 2**31 - 1, 0))
                y = None if label is None else run._y(label)
                frames, reads, writes = canvas_frames(m, y=y, z=m.prior_sample(1, y))
        scale = max(1, 96 // frames.shape[-1])
        box = (lambda b, t: None if b is None else [round(float(v) * scale, 2) for v in b[t, 0]])
        return {"frames": [png(frames[t], 1, scale) for t in range(len(frames))],
                "reads": [box(reads, t) for t in range(len(frames))],
                "writes": [box(writes, t) for t in range(len(frames))], "scale": scale}

    def file(self, run: ExplorerRun, name: str) -> tuple[bytes, str]:
        if name not in RUN_FILES:
            raise RequestError(404, f"not a file the explorer shows: {name[:60]!r}")
        path = run.path / name
        if not path.is_file():
            raise RequestError(404, f"{run.path.name} has no {name}")
        return path.read_bytes(), "text/html; charset=utf-8" if name.endswith(".html") else "image/png"


def _evaluation(path: Path) -> dict:
    import json

    try:
        result = json.loads((path / "evaluation.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in result.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}


def _mask(body: dict | None, h: int, w: int) -> torch.Tensor:
    rows = None if not isinstance(body, dict) else body.get("mask")
    if not isinstance(rows, list) or len(rows) != h or any(not isinstance(r, list) or len(r) != w for r in rows):
        raise RequestError(400, f"mask must be {h} rows of {w} values (1 kept, 0 missing)")
    try:
        mask = torch.tensor(rows, dtype=torch.float32)
    except (TypeError, ValueError):
        raise RequestError(400, "mask values must be 0 or 1") from None
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise RequestError(400, "mask values must be 0 or 1")
    if mask.sum() == 0 or mask.sum() == mask.numel():
        raise RequestError(400, "mask must keep some pixels and miss some")
    return mask.view(1, 1, h, w)
