"""`vaekit`: train, evaluate, sample, reconstruct, interpolate, traverse, generate, complete, style-transfer,
classify.

Every refusal (bad config, corrupt data, missing checkpoint) is one line on stderr and exit code 2;
a diverged training run exits with 3. No traceback for a user's mistake.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from ..errors import ConfigError, VaekitError


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model into a run folder",
                       description="Train MODEL; settings: preset < --config < shortcuts < --set.")
    p.add_argument("model", help="registered model name (see `vaekit models`)")
    p.add_argument("--out", required=True, help="run folder to create (or continue with --resume)")
    p.add_argument("--data", help="dataset name (see `vaekit datasets`); same as --set data.name=...")
    p.add_argument("--steps", type=int, help="total optimiser steps (train.steps)")
    p.add_argument("--epochs", type=float, help="train for this many epochs instead of --steps")
    p.add_argument("--seed", type=int, help="train.seed")
    p.add_argument("--batch-size", type=int, help="train.batch_size")
    p.add_argument("--lr", type=float, help="train.lr")
    p.add_argument("--device", help="train.device: cpu (default), cuda, cuda:N, mps or auto")
    p.add_argument("--config", help="TOML file with [model], [data], [train] tables")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one setting, e.g. --set model.beta=4 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--iw-samples", type=int, default=50, help="K of the final IWAE evaluation (default 50)")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _cmd_train(args) -> int:
    from ..run import read_run_config, resolve_config, train_run

    base = {"data": {}, "train": {}}
    if args.data is not None:  # --data "" is refused by name, not ignored
        base["data"]["name"] = args.data
    for key in ("steps", "epochs", "seed", "batch_size", "lr", "device"):
        if getattr(args, key) is not None:
            base["train"][key] = getattr(args, key)
    if args.iw_samples < 0:
        raise ConfigError(f"--iw-samples must be >= 0 (0 skips the IWAE bound), got {args.iw_samples}")
    if args.resume:
        # Start from the run's saved settings; what is given now changes them (train settings only).
        _, tree = read_run_config(args.out)
        base = {"model": dict(tree["model"]), "data": {**tree["data"], **base["data"]},
                "train": {**tree["train"], **base["train"]}}
    cfg = resolve_config(args.model, args.config, args.set, base)
    result = train_run(cfg, args.out, resume=args.resume, progress=not args.quiet, final_iw_samples=args.iw_samples)
    if result:  # under torchrun, rank 0 alone evaluates and reports
        print(_format_metrics(result))
        print(f"run folder: {args.out} (open {args.out}/report.md)")
    return 0


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="test-set metrics of a trained run")
    p.add_argument("run")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--iw-samples", type=int, default=100, help="K importance samples for the IWAE bound (0 = skip)")
    p.add_argument("--iw-images", default="200", help="test images scored with the IWAE bound, or 'all' (default 200)")
    p.add_argument("--images", default="all", help="test images for every other metric, or 'all'")
    p.add_argument("--batch-size", type=int, default=250, help="images per network call (at most 250; default 250)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    p.add_argument("--disentanglement", choices=("fast", "full", "off"), default="fast",
                   help="on data with known factors (dsprites): MIG (disentanglement_lib's and Chen et al.'s "
                        "posterior estimator, per factor too), beta-VAE, FactorVAE, DCI, SAP; fast encodes ~68k "
                        "images, full disentanglement_lib's counts and every dSprites image (~3.7M encodes) "
                        "(default fast)")
    p.add_argument("--kl-decomposition", choices=("fast", "full", "off"), default="fast",
                   help="the KL split into index-code MI, total correlation and dimension-wise KL over the "
                        "training set (Chen et al. 2018): fast uses 10,000 images, full every image (default fast)")
    p.add_argument("--samples", type=int, default=10_000,
                   help="model samples for FD, precision/recall and MS-SSIM against the test split (0 = skip; "
                        "default 10000)")
    p.add_argument("--pairs", type=int, default=10_000, help="random sample pairs for MS-SSIM diversity")
    p.add_argument("--feature-net", metavar="PATH",
                   help="feature network (safetensors) for FD and precision/recall; default: the dataset's cached "
                        "one, trained with a fixed recipe on first use ($VAEKIT_CACHE, ~/.cache/vaekit)")
    p.add_argument("--inception", metavar="PATH",
                   help="local FID-Inception weights (safetensors) for the standard FID; never downloaded")
    p.add_argument("--completion", default="auto",
                   help="complete the missing half of test images kept as left, right, top or bottom, and score "
                        "the completed region (MSE, SSIM) beside the training mean; auto: the half a CVAE "
                        "conditioned on an image part was trained on, off for other models; off")
    p.add_argument("--completion-images", type=int, default=1000, help="test images completed (default 1000)")
    p.add_argument("--quiet", action="store_true", help="no progress display")


def _count(text: str, name: str) -> int | None:
    if text == "all":
        return None
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise ConfigError(f"{name} must be a positive integer or 'all', got {text!r}")
    return n


def _cmd_evaluate(args) -> int:
    from ..run import EvaluationOptions, evaluate_run, load_run, load_split

    options = EvaluationOptions(
        iw_samples=args.iw_samples, iw_images=_count(args.iw_images, "--iw-images"),
        images=_count(args.images, "--images"), batch_size=args.batch_size, seed=args.seed,
        disentanglement=args.disentanglement, kl_decomposition=args.kl_decomposition, samples=args.samples,
        pairs=args.pairs, feature_net=args.feature_net, inception=args.inception, completion=args.completion,
        completion_images=args.completion_images, progress=not args.quiet)
    cfg, model, _ = load_run(args.run, args.device)
    test, train = load_split(cfg, "test"), load_split(cfg, "train")
    shown = len(test) if options.images is None else min(options.images, len(test))
    n_iw = shown if options.iw_images is None else min(options.iw_images, shown)
    iw_note = (f"; IWAE bound with K={args.iw_samples} on {n_iw} of them"
               if args.iw_samples > 0 and model.capabilities.bound is not None else
               f"; no IWAE bound ({model.capabilities.no_bound_reason})" if args.iw_samples > 0 else "")
    if not args.quiet:
        print(f"evaluating {cfg.model_name} on {shown} {cfg.data.name} test images{iw_note} ...", file=sys.stderr)
    result = evaluate_run(model, train, test, options)
    result = {"run": args.run, "model": cfg.model_name, "data": cfg.data.name, **result}
    print(json.dumps(result) if args.json else _format_metrics(result))
    return 0


def _format_metrics(result: dict) -> str:
    width = max(len(k) for k in result)
    def fmt(v):
        return f"{v:.5g}" if isinstance(v, float) and math.isfinite(v) else str(v)
    return "\n".join(f"{k.ljust(width)}  {fmt(v)}" for k, v in result.items()
                     if not isinstance(v, list))  # a confusion matrix: in --json and the run's report.md


def _add_picture(sub, name: str, help_text: str, n_default: int | None) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text)
    p.add_argument("run")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    p.add_argument("-o", "--output", required=True, help="PNG file to write")
    if n_default is not None:
        p.add_argument("-n", type=int, default=n_default, help=f"number of images (default {n_default})")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(check_arguments=_check_picture_args)  # refused before any work
    return p


def _cmd_sample(args) -> int:
    import torch

    from ..run import load_run, load_split

    from ..run.pictures import stage_rows
    from ..viz import save_grid

    from ..conditioning import side_information_for_samples
    from ..models.base import eval_mode

    cfg, model, _ = load_run(args.run, args.device)
    _positive(args.n, "-n")
    if args.format != "grid":
        return _write_samples(args, cfg, model)
    # a conditional model: labels cycling through the classes, or the kept parts of test images
    y = side_information_for_samples(model, load_split(cfg, "test"), 0, args.n, args.seed) \
        if model.capabilities.conditional else None
    torch.manual_seed(args.seed)
    if args.stages:  # one row per output stage of the same latent codes (coarse, refine1, ...)
        with eval_mode(model):
            grid, names = stage_rows(model.decode_stages(model.prior_sample(args.n, y), y))
        save_grid(args.output, grid, nrow=args.n)
        print(f"wrote {args.n} samples to {args.output} (rows: {', '.join(names)})")
        return 0
    x = model.sample(args.n, y)
    nrow = args.nrow or max(1, int(math.ceil(math.sqrt(args.n))))
    save_grid(args.output, x, nrow=nrow)
    print(f"wrote {args.n} samples to {args.output}")
    return 0


def _write_samples(args, cfg, model) -> int:
    """`sample --format folder|npz`: N samples drawn IMAGES_PER_CALL at a time (memory does not grow with N
    beyond the output itself), as PNG files or one array; the folder or file appears whole or not at all."""
    import torch

    from ..conditioning import data_classes, side_information_for_samples
    from ..importance import IMAGES_PER_CALL
    from ..models.base import eval_mode
    from ..run import load_split

    caps = model.capabilities
    side_data = load_split(cfg, "test") if caps.conditional else None

    def chunks():
        torch.manual_seed(args.seed)
        with eval_mode(model), torch.no_grad():
            for start in range(0, args.n, IMAGES_PER_CALL):
                stop = min(args.n, start + IMAGES_PER_CALL)
                y = side_information_for_samples(model, side_data, start, stop, args.seed) if caps.conditional else None
                out = {"images": _as_uint8(model.sample(stop - start, y))}
                if caps.label_conditional:
                    out["labels"] = (torch.arange(start, stop) % data_classes(side_data)).numpy()  # as y cycles
                yield out

    return _write_arrays(args, "sampling", "sample", args.n, chunks())


def _as_uint8(x):
    """(N, C, H, W) in [0, 1] -> uint8 (N, H, W, C) numpy."""
    import torch

    return (x.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _write_arrays(args, doing: str, stem: str, n: int, chunks) -> int:
    """Write `chunks` (dicts of arrays, the first key the images) to -o: a folder of PNGs STEM_i.png (the
    first key) or one .npz of every key; whole or not at all, with progress."""
    import shutil
    from pathlib import Path

    import numpy as np

    from ..files import atomic_path
    from ..progress import TaskProgress
    from ..viz import save_png

    out = Path(args.output)
    if args.format == "npz" and out.suffix != ".npz":
        raise ConfigError(f"--format npz writes one .npz file; give -o a name ending in .npz, not {out}")
    if args.format == "folder" and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"-o {out} exists and is not an empty folder; choose a new one")
    partial = out.with_name(out.name + ".partial")
    if args.format == "folder":
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    digits, done, kept = len(str(n - 1)), 0, {}
    with TaskProgress(doing, n, "images") as shown:
        for chunk in chunks:
            first = next(iter(chunk.values()))
            if args.format == "folder":
                for i, image in enumerate(first, done):
                    save_png(partial / f"{stem}_{i:0{digits}d}.png", image)
            else:
                for k, v in chunk.items():
                    kept.setdefault(k, []).append(v)
            done += len(first)
            shown.advance(len(first))
    if args.format == "folder":
        if out.exists():
            out.rmdir()  # empty, checked above
        partial.rename(out)
        print(f"wrote {n} images to {out} (one PNG each)")
    else:
        arrays = {k: np.concatenate(v) for k, v in kept.items()}
        with atomic_path(out) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
        print(f"wrote {n} images to {out} (arrays: {', '.join(arrays)})")
    return 0


def _cmd_reconstruct(args) -> int:
    import torch

    from ..data import fixed_sample
    from ..run import load_run, load_split
    from ..run.pictures import reconstruction_rows
    from ..viz import save_grid

    cfg, model, _ = load_run(args.run, args.device)
    _positive(args.n, "-n")
    data = load_split(cfg, args.split)
    # by default the uniform sample whose first 16 the run folder's reconstructions.png shows (never "the
    # first n": an image folder is stored class by class); --random: another one for each --seed
    idx = fixed_sample(len(data), args.n, seed=1 + args.seed if args.random else 0)
    torch.manual_seed(args.seed)
    if args.format != "grid":
        return _write_reconstructions(args, model, data, idx)
    grid, names = reconstruction_rows(model, data.batch(idx), _labels(data, idx))
    save_grid(args.output, grid, nrow=len(idx))
    print(f"wrote {len(idx)} {args.split} images and their reconstructions to {args.output} "
          f"(rows: {', '.join(names)})")
    return 0


def _write_reconstructions(args, model, data, idx) -> int:
    """`reconstruct --format folder|npz`: the reconstructions (posterior mean decoded) of the images `idx` of a
    split, 250 per call; the .npz holds the inputs, their positions and labels too."""
    import torch

    from ..batch import Batch
    from ..importance import IMAGES_PER_CALL
    from ..models.base import eval_mode

    def chunks():
        with eval_mode(model), torch.no_grad():
            for start in range(0, len(idx), IMAGES_PER_CALL):
                part = idx[start:start + IMAGES_PER_CALL]
                x = data.batch(part).to(model.device)
                labels = data.labels[part].to(model.device) if data.labels is not None else None
                out = {"reconstructions": _as_uint8(model.reconstruct(x, model.side_information(Batch(x, labels)))),
                       "images": _as_uint8(x), "positions": part.numpy()}
                if labels is not None:
                    out["labels"] = labels.cpu().numpy()
                yield out

    return _write_arrays(args, "reconstructing", "reconstruction", len(idx), chunks())


def _cmd_interpolate(args) -> int:
    from ..data import fixed_sample
    from ..run.pictures import interpolation_grid
    from ..run import load_run, load_split
    from ..viz import save_grid

    cfg, model, _ = load_run(args.run, args.device)
    _positive(args.pairs, "--pairs")
    _positive(args.steps, "--steps")
    data = load_split(cfg, "test")
    idx = fixed_sample(len(data), 2 * args.pairs, args.seed)  # --seed 0: the run folder's interpolations.png
    if len(idx) < 2 * args.pairs:
        raise ConfigError(f"--pairs {args.pairs} needs {2 * args.pairs} test images; the test split has {len(data)}")
    x, a, b = data.batch(idx), idx[: args.pairs], idx[args.pairs:]
    grid = interpolation_grid(model, x[: args.pairs], x[args.pairs:], steps=args.steps,
                              labels_a=_labels(data, a), labels_b=_labels(data, b))
    save_grid(args.output, grid, nrow=args.steps + 2)
    print(f"wrote {args.pairs} interpolations of {args.steps} steps to {args.output}")
    return 0


def _cmd_traverse(args) -> int:
    import torch

    from ..data import fixed_sample
    from ..run import load_run, load_split
    from ..run.pictures import traversal_grid
    from ..viz import save_grid

    cfg, model, _ = load_run(args.run, args.device)
    _positive(args.steps, "--steps")
    if model.capabilities.posterior == "none":
        raise ConfigError(f"{cfg.model_name} has no posterior q(z|x): latent KLs, and so traversals by KL, need one")
    if model.capabilities.posterior == "sequential":
        raise ConfigError(f"{cfg.model_name}'s posterior is sequential (q(z_t | x, z_<t)), not one q(z|x): traversals "
                          "ordered by a per-dimension KL do not apply; see the canvases (vaekit sample --stages)")
    data = load_split(cfg, "test")
    if not 0 <= args.image < len(data):
        raise ConfigError(f"--image must lie in [0, {len(data) - 1}], got {args.image}")
    kl_idx, ref = fixed_sample(len(data), 1000), torch.tensor([args.image])  # the KLs that order the rows
    grid, dims, kl = traversal_grid(model, data.batch(ref), data.batch(kl_idx), steps=args.steps,
                                    span=args.span, dims=args.dims, labels_ref=_labels(data, ref),
                                    labels_kl=_labels(data, kl_idx))
    save_grid(args.output, grid, nrow=args.steps)
    shown = ", ".join(f"z{d} ({kl[d]:.2f})" for d in dims)
    print(f"wrote traversals to {args.output}: rows = latent dimensions by KL in nats: {shown}")
    return 0


def _labels(data, idx):
    """The labels of images idx of `data` (None when it has none): a conditional model's side information."""
    return None if data.labels is None else data.labels[idx]


def _cmd_generate(args) -> int:
    import torch

    from ..conditioning import data_classes
    from ..run import load_run, load_split
    from ..run.uses import generate
    from ..viz import save_grid

    cfg, model, saved = load_run(args.run, args.device)
    _positive(args.n, "-n")
    classes = int(saved.get("classes") or data_classes(load_split(cfg, "test")))
    torch.manual_seed(args.seed)
    x = generate(model, args.label, args.n, classes)
    save_grid(args.output, x, nrow=args.nrow or max(1, int(math.ceil(math.sqrt(args.n)))))
    print(f"wrote {args.n} samples of class {args.label} to {args.output}")
    return 0


def _cmd_encode(args) -> int:
    """Codes of a split's images, 250 per network call, in eval mode: `mu` and `logvar` (N, D) for a model
    with a factorised posterior, else `code` (N, ...) (the model's own deterministic code: DRAW's path of
    posterior means, an autoencoder's code), and for a discrete one (VQ-VAE) `indices` (N, h, w), its grid of
    codebook entries, beside `code`, the encoder's output before quantisation; `positions` in the split, and `labels` / `factors` where the
    data has them. Written atomically as safetensors with the run, model and split in its metadata."""
    from pathlib import Path

    import torch
    from safetensors.torch import save_file

    from ..batch import Batch
    from ..data.dataset import fixed_sample
    from ..files import atomic_path
    from ..importance import IMAGES_PER_CALL
    from ..models.base import eval_mode
    from ..progress import TaskProgress
    from ..run import load_run, load_split

    out = Path(args.output)
    if out.suffix != ".safetensors":
        raise ConfigError(f"-o names the .safetensors file to write, got {out}")
    if not out.parent.is_dir():
        raise ConfigError(f"-o {out}: the folder {out.parent} does not exist; create it or write elsewhere")
    wanted = _count(args.images, "--images")
    cfg, model, saved = load_run(args.run, args.device)
    data = load_split(cfg, args.split)
    n = len(data) if wanted is None else min(wanted, len(data))
    positions = fixed_sample(len(data), n) if n < len(data) else torch.arange(len(data))
    factorised = model.capabilities.factorised
    parts: dict[str, list] = {}
    with eval_mode(model), torch.no_grad(), torch.random.fork_rng(devices=[]), \
            TaskProgress(f"encoding the {args.split} split", n, "images") as shown:
        torch.manual_seed(0)  # a dynamically binarised split draws its pixels when read: the same draw each time
        for start in range(0, n, IMAGES_PER_CALL):
            idx = positions[start:start + IMAGES_PER_CALL]
            x = data.batch(idx).to(model.device)
            labels = data.labels[idx].to(model.device) if data.labels is not None else None
            y = model.side_information(Batch(x, labels))
            if factorised:
                q = model.encode(x, y)
                parts.setdefault("mu", []).append(q.mu.flatten(1).float().cpu())
                parts.setdefault("logvar", []).append(q.logvar.flatten(1).float().cpu())
            else:
                if model.capabilities.discrete:
                    parts.setdefault("indices", []).append(model.encode(x, y).long().cpu())
                try:
                    parts.setdefault("code", []).append(model.latent_code(x, y).float().cpu())
                except NotImplementedError:
                    raise ConfigError(f"a {cfg.model_name} run has no encoder to encode images with") from None
            shown.advance(len(idx))
    tensors = {k: torch.cat(v).contiguous() for k, v in parts.items()}
    tensors["positions"] = positions.clone().contiguous()
    if data.labels is not None:
        tensors["labels"] = data.labels[positions].long().contiguous()
    if hasattr(data, "factors_of"):
        tensors["factors"] = data.factors_of(positions).long().contiguous()
    meta = {"format": "vaekit-codes", "run": str(Path(args.run).resolve()), "model": cfg.model_name,
            "split": args.split, "data": data.source, "images": str(n)}
    with atomic_path(out) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items())
    print(f"wrote the codes of {n} {args.split} images to {out} ({shapes})")
    return 0


def _cmd_export(args) -> int:
    from ..run.export import export_run

    out = export_run(args.run, args.output)
    print(f"wrote {out}: config.json, model.safetensors, README.md (load it: vaekit.load({str(out)!r}))")
    return 0


def _cmd_classify(args) -> int:
    import torch

    from ..data.image_folder import read_image
    from ..run import load_run

    cfg, model, saved = load_run(args.run, args.device)
    if not model.capabilities.classifies:
        raise ConfigError(f"{args.run} is a {cfg.model_name} run, which does not classify (m2, ssl_vaegan and "
                          "cvae_gan do)")
    images = torch.stack([read_image(path, model.image_shape) for path in args.images])  # every file read first
    names = saved.get("class_names") or []
    with torch.no_grad():
        probs = model.classify(images.to(model.device)).exp().cpu()
    rows = []
    for path, p in zip(args.images, probs):
        c = int(p.argmax())
        rows.append({"image": path, "class": c, "name": names[c] if c < len(names) else str(c),
                     "q(y|x)": [round(float(v), 4) for v in p]})
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['image']}\t{r['class']} ({r['name']})\tq(y|x) = " + " ".join(f"{v:.3f}" for v in r["q(y|x)"]))
    return 0


def _cmd_complete(args) -> int:
    import torch

    from ..run.completion import completion_method, completion_rows
    from ..data import fixed_sample
    from ..metrics import dataset_mean_image
    from ..run import load_run, load_split
    from ..viz import save_grid

    cfg, model, _ = load_run(args.run, args.device)
    _positive(args.n, "-n")
    _positive(args.steps, "--steps")
    method = completion_method(model, args.keep, args.method)  # refused before any data is read
    data = load_split(cfg, args.split)
    fill = dataset_mean_image(load_split(cfg, "train")) if method != "prior" else None
    idx = fixed_sample(len(data), args.n, args.seed)
    torch.manual_seed(args.seed)
    grid, names = completion_rows(model, data.batch(idx), args.keep, method, fill=fill, steps=args.steps)
    save_grid(args.output, grid, nrow=len(idx))
    print(f"wrote {len(idx)} completions ({args.keep} kept, method {method}) to {args.output} "
          f"(rows: {', '.join(names)})")
    return 0


def _cmd_style_transfer(args) -> int:
    import torch

    from ..conditioning import data_classes
    from ..data import fixed_sample
    from ..run import load_run, load_split
    from ..run.uses import style_transfer_grid
    from ..viz import save_grid

    cfg, model, saved = load_run(args.run, args.device)
    _positive(args.n, "-n")
    data = load_split(cfg, "test")
    if data.labels is None:
        raise ConfigError(f"style transfer encodes test images with their labels; {cfg.data.name} has none")
    classes = int(saved.get("classes") or data_classes(data))
    idx = fixed_sample(len(data), args.n, args.seed)
    torch.manual_seed(args.seed)
    grid = style_transfer_grid(model, data.batch(idx), data.labels[idx], classes)
    save_grid(args.output, grid, nrow=classes + 1)
    print(f"wrote style transfer of {len(idx)} test images to {args.output} (each row: the image, then its code "
          f"decoded with labels 0..{classes - 1})")
    return 0


def _check_picture_args(args) -> None:
    """What every picture command is given, refused in one line before any work: the PNG to write and
    the grid's counts."""
    from pathlib import Path

    out = Path(args.output)
    if out.is_dir() and getattr(args, "format", "grid") == "grid":
        raise ConfigError(f"-o {args.output} is a folder; give the PNG file to write, e.g. -o {out / 'grid.png'}")
    if not out.parent.is_dir():
        raise ConfigError(f"-o {args.output}: the folder {out.parent} does not exist; create it or write elsewhere")
    for name in ("nrow", "dims"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{name} must be >= 1, got {value}")
    span = getattr(args, "span", None)
    if span is not None and not (math.isfinite(span) and span > 0):
        raise ConfigError(f"--span must be a finite number > 0 (prior standard deviations), got {span}")


def _positive(n: int, name: str) -> None:
    if n < 1:
        raise ConfigError(f"{name} must be >= 1, got {n}")


def _cmd_models(args) -> int:
    from ..models import MODELS

    width = max(len(n) for n in MODELS)
    for name, entry in MODELS.items():
        print(f"{name.ljust(width)}  {entry.description}\n{' ' * width}  paper: {entry.paper}")
    return 0


def _cmd_datasets(args) -> int:
    from ..data import describe_datasets

    rows = describe_datasets()
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        state = "available" if r["available"] else "not found"
        print(f"{r['name'].ljust(width)}  [{state}] {r['description']}")
        print(f"{' ' * width}  location: {r['location']}")
        if r.get("note") and not r["available"]:
            print(f"{' ' * width}  {r['note']}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, with its own refusals as one line and exit code 2 like every other refusal."""

    def error(self, message: str):
        self.exit(2, f"vaekit: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="vaekit", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_evaluate(sub)
    p = _add_picture(sub, "sample", "draw samples from the prior into a PNG grid, a folder of PNGs or an .npz", 64)
    p.add_argument("--format", choices=("grid", "folder", "npz"), default="grid",
                   help="grid: one PNG (default); folder: one PNG per sample in the folder -o; npz: one uint8 "
                        "array 'images' (N, H, W, C), with 'labels' for a label-conditional model (for external "
                        "FID tools)")
    p.add_argument("--nrow", type=int, help="images per row (default: square)")
    p.add_argument("--stages", action="store_true", help="one row per output stage (multi-stage models)")
    p = _add_picture(sub, "reconstruct", "test images and their reconstructions, one row per output stage", 16)
    p.add_argument("--format", choices=("grid", "folder", "npz"), default="grid",
                   help="grid: one PNG (default); folder: one PNG per reconstruction in the folder -o; npz: uint8 "
                        "arrays 'reconstructions' and 'images' (N, H, W, C) with 'positions' and 'labels'")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--random", action="store_true", help="another uniform sample, one for each --seed, instead of "
                   "the fixed one whose first 16 are the run folder's reconstructions.png")
    p = _add_picture(sub, "interpolate", "decode straight lines in latent space between test images", None)
    p.add_argument("--pairs", type=int, default=6)
    p.add_argument("--steps", type=int, default=10, help="decoded points per line, ends included")
    p = _add_picture(sub, "traverse", "sweep each latent dimension (rows, ordered by KL) across the prior", None)
    p.add_argument("--steps", type=int, default=9, help="values per row")
    p.add_argument("--span", type=float, default=3.0, help="sweep from -span to +span prior standard deviations")
    p.add_argument("--dims", type=int, help="show only the most used dimensions")
    p.add_argument("--image", type=int, default=0, help="test image whose code the other dimensions keep")
    p = _add_picture(sub, "generate", "samples of one class from a label-conditional run (cvae, cvae_gan, m2, ssl_vaegan)", 16)
    p.add_argument("--label", type=int, required=True, help="class index (0-based)")
    p.add_argument("--nrow", type=int, help="images per row (default: square)")
    p = _add_picture(sub, "complete", "complete the missing half of test images (rows: kept part, completion, "
                     "truth): a CVAE conditioned on the kept half decodes prior draws, any other model infers the "
                     "missing pixels", 8)
    p.add_argument("--keep", required=True, help="the part kept: left, right, top or bottom (a half), or 1-3 "
                   "quadrants joined by '+' (tl, tr, bl, br: e.g. tl, tl+tr+bl)")
    p.add_argument("--method", default="auto", choices=("auto", "prior", "optimise", "iterate"),
                   help="prior: a CVAE's p(z|y); optimise: the code maximising log p(observed pixels|z) + log p(z); "
                        "iterate: encode/decode with the kept pixels clamped; auto: prior for a CVAE, optimise "
                        "for a model with a likelihood, else iterate")
    p.add_argument("--steps", type=int, default=100, help="optimisation steps or iterations (default 100)")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p = _add_picture(sub, "style-transfer", "encode test images with their own label, decode each code with every "
                     "label (rows: one image each)", 4)
    p = sub.add_parser("encode", help="the codes of a split's images (posterior means and log-variances) into "
                                      "one safetensors file, with their labels and factors where known")
    p.add_argument("run")
    p.add_argument("-o", "--output", required=True, help="the .safetensors file to write")
    p.add_argument("--split", choices=("train", "test"), default="test")
    p.add_argument("--images", default="all", help="a fixed uniform sample of N images, or 'all' (default)")
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("export", help="the trained model as a self-contained folder (config, weights, a model card) "
                                      "that vaekit.load reads without the run folder")
    p.add_argument("run")
    p.add_argument("-o", "--output", required=True, help="the new folder to write")
    p = sub.add_parser("classify", help="the predicted class and q(y|x) of image files (m2, ssl_vaegan, cvae_gan)")
    p.add_argument("run")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG files, brought to the run's image shape")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("serve", help="a local web page to explore trained runs through their models")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--device", default="cpu")
    p = sub.add_parser("sweep", help="train one run per point of a grid of settings and per seed, then the table "
                                     "(seeds as mean ± sd) and a plot of each metric against the setting")
    p.add_argument("model", help="registered model name (see `vaekit models`)")
    p.add_argument("--out", required=True, help="the sweep's folder: one run folder each, logs/, sweep.md")
    p.add_argument("--grid", action="append", default=[], metavar="SECTION.KEY=V1,V2,...",
                   help="a setting and its values (repeatable: every combination)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="train.seed of each repeat (default 0)")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time, one process each (default 1: one "
                   "after another, each using the whole machine)")
    p.add_argument("--print-commands", action="store_true",
                   help="print one `vaekit train` line per run (for a scheduler's job array) and stop")
    for flag, kind, text in (("--data", str, "dataset name"), ("--steps", int, "train.steps"),
                             ("--epochs", float, "train.epochs"), ("--batch-size", int, "train.batch_size"),
                             ("--lr", float, "train.lr"), ("--device", str, "train.device"),
                             ("--config", str, "TOML file with [model], [data], [train] tables")):
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="a setting every run shares (repeatable)")
    p.add_argument("--iw-samples", type=int, default=50, help="K of each run's final IWAE evaluation (default 50)")
    p = sub.add_parser("compare", help="the final metrics of several runs side by side")
    p.add_argument("runs", nargs="+", metavar="RUN")
    p.add_argument("--json", action="store_true", help="print one JSON object (columns and rows)")
    p.add_argument("--each-run", action="store_true", help="one row per run (by default runs that differ only in "
                   "the seed are one row: mean ± sd over the seeds)")
    sub.add_parser("models", help="list every model with a one-line description and its paper")
    sub.add_parser("datasets", help="list datasets and whether their files are here")
    return parser


def _cmd_serve(args) -> int:
    from ..explorer.server import serve

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must lie in [0, 65535], got {args.port}")
    return serve(args.runs, args.host, args.port, args.device)


def _cmd_sweep(args) -> int:
    from pathlib import Path

    from ..run.sweep import command_lines, parse_grid, plan, report, run_sweep

    base, train_args = {"data": {}, "train": {}}, []
    if args.data is not None:
        base["data"]["name"] = args.data
        train_args += ["--data", args.data]
    for key, flag in (("steps", "--steps"), ("epochs", "--epochs"), ("batch_size", "--batch-size"), ("lr", "--lr"),
                      ("device", "--device")):
        if getattr(args, key) is not None:
            base["train"][key] = getattr(args, key)
            train_args += [flag, str(getattr(args, key))]
    if args.iw_samples < 0:
        raise ConfigError(f"--iw-samples must be >= 0, got {args.iw_samples}")
    if args.parallel < 1:
        raise ConfigError(f"--parallel must be >= 1, got {args.parallel}")
    train_args += ["--iw-samples", str(args.iw_samples)]
    grid = parse_grid(args.grid)
    out = Path(args.out)
    runs = plan(args.model, train_args, args.set, grid, args.seeds, out, args.config, base)
    if args.print_commands:
        print("\n".join(command_lines(runs)))
        return 0
    run_sweep(runs, out, args.parallel)
    print(report(runs, out, grid))
    print(f"sweep folder: {out} (open {out}/sweep.md)")
    return 0


def _cmd_compare(args) -> int:
    import json

    from ..run.compare import compare_runs, format_table, group_seeds

    columns, rows = compare_runs(args.runs)
    if not args.each_run:
        rows = group_seeds(columns, rows)
    if args.json:
        print(json.dumps({"columns": [{"key": k, "title": t, "lower_is_better": lower} for k, t, lower in columns],
                          "rows": rows}, indent=1))
    else:
        print(format_table(columns, rows))
    return 0


COMMANDS = {"train": _cmd_train, "evaluate": _cmd_evaluate, "sample": _cmd_sample,
            "reconstruct": _cmd_reconstruct, "interpolate": _cmd_interpolate, "traverse": _cmd_traverse,
            "generate": _cmd_generate, "complete": _cmd_complete, "style-transfer": _cmd_style_transfer,
            "classify": _cmd_classify, "encode": _cmd_encode, "export": _cmd_export, "serve": _cmd_serve, "sweep": _cmd_sweep, "compare": _cmd_compare,
            "models": _cmd_models,
            "datasets": _cmd_datasets}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (the console script calls sys.exit on it)."""
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "check_arguments", None) is not None:  # a picture command's -o and counts
            args.check_arguments(args)
        return COMMANDS[args.command](args)
    except VaekitError as e:
        # one write of the whole line: the processes of a torchrun share one stderr, and print's separate
        # write of the newline let two ranks' lines run together
        if str(e):  # (workers' own failures were said by the worker)
            sys.stderr.write(f"vaekit: error: {e}\n")
            sys.stderr.flush()
        return e.exit_code
    except KeyboardInterrupt:
        print("vaekit: interrupted", file=sys.stderr)
        return 130
    finally:
        from .. import distributed

        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
