"""A run's report, built once as data and rendered twice: `report.md` and a self-contained
`report.html` (every picture inline, no script, font or style from anywhere else).

`build_report` makes the sections a run's results produce (settings, metrics, model notes, the
confusion matrix, the KL decomposition, disentanglement, pictures); `to_markdown` and `to_html`
only lay them out, so no section is written twice."""

from __future__ import annotations

import base64
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path


# --- the data model ------------------------------------------------------------------------

@dataclass
class Text:
    text: str  # a paragraph; `code` spans are the only markup


@dataclass
class Bullets:
    items: list[str]


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Picture:
    path: str  # relative to the run folder
    alt: str


@dataclass
class Section:
    title: str  # "" for the untitled opening section
    blocks: list = field(default_factory=list)


@dataclass
class Report:
    title: str
    sections: list[Section]


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


MODEL_PICTURES = "model_pictures.json"  # the model's own pictures in a run folder: [[stem, caption], ...]


def model_pictures(out: Path) -> list[tuple[str, str]]:
    path = out / MODEL_PICTURES
    return [tuple(p) for p in json.loads(path.read_text())] if path.exists() else []


def fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else str(v)


# --- the sections --------------------------------------------------------------------------

_DIS = "disentanglement/"
_DIS_SCORES = [("MIG, Chen et al.'s posterior estimator (mean over every factor)", "mig_posterior"),
               ("MIG, disentanglement_lib", "mig"),
               ("beta-VAE score", "beta_vae/eval_accuracy"), ("FactorVAE score", "factor_vae/eval_accuracy"),
               ("DCI disentanglement", "dci/disentanglement"), ("DCI completeness", "dci/completeness"),
               ("DCI informativeness", "dci/informativeness"), ("SAP", "sap")]
_DEC = "decomposition/"


def disentanglement_section(result: dict) -> list[Section]:
    """The disentanglement scores of `result` (keys disentanglement/...), and both MIGs per factor."""
    d = {k[len(_DIS):]: v for k, v in result.items() if k.startswith(_DIS)}
    if not d:
        return []
    blocks = [Table(["score", "value"], [[name, f"{d[key]:.4f}"] for name, key in _DIS_SCORES if key in d])]
    factors = [k.split("/", 1)[1] for k in d if k.startswith("mig_posterior/") and k.split("/", 1)[1] not in
               ("n", "samples")]
    if factors:
        blocks.append(Table(["factor", "MIG (Chen et al.)", "MIG (disentanglement_lib)"],
                            [[f, f"{d[f'mig_posterior/{f}']:.4f}", f"{d.get(f'mig/{f}', float('nan')):.4f}"]
                             for f in factors]))
    counts = ", ".join(f"{k} = {v:g}" for k, v in d.items() if k.rsplit("/", 1)[-1] in
                       ("n", "samples", "bins", "n_train", "n_eval", "n_test", "n_var", "pairs", "group_size"))
    blocks.append(Text(f"Sample counts: {counts}."))
    return [Section("Disentanglement (scored against the data's known factors)", blocks)]


def confusion_section(result: dict, names: list[str] | None) -> list[Section]:
    """The confusion matrix of a model that classifies (rows: the true class, columns: the predicted)."""
    counts = result.get("classification/confusion")
    if not counts:
        return []
    k = len(counts)
    names = names if names and len(names) == k else [str(c) for c in range(k)]
    rows = [[f"{c} {names[c]}", *map(str, row), f"{result.get(f'classification/error/{c}', float('nan')):.3f}"]
            for c, row in enumerate(counts)]
    return [Section(f"Classification (test error {result['classification/error']:.4f} on "
                    f"{result['classification/images']} test images, argmax q(y|x))",
                    [Text("Confusion matrix (rows: true class, columns: predicted):"),
                     Table(["true \\ predicted", *map(str, range(k)), "error"], rows)])]


def decomposition_section(result: dict) -> list[Section]:
    """The KL of q(z) decomposed over the data set (keys decomposition/...), with what separates it from
    the minibatch estimates a beta-TCVAE logs (test/tc/...)."""
    d = {k[len(_DEC):]: v for k, v in result.items() if k.startswith(_DEC)}
    if "mi" not in d:
        return []
    table = Table(["term", "nats"], [[name, f"{d[key]:.4f}"] for name, key in (
        ("index-code mutual information", "mi"), ("total correlation", "tc"), ("dimension-wise KL", "dwkl"),
        ("sum (the average KL)", "kl"))])
    text = (f"q(z) is the mixture of the posteriors of {d['n']} training images, scored at {d['samples']} draws; the "
            f"mutual information is at most log {d['n']} = {math.log(d['n']):.2f} nats, so compare runs at equal "
            "counts (`vaekit evaluate RUN --kl-decomposition full` uses every image).")
    if "test/tc/mi" in result:
        text += (" The test/tc/* rows above are the minibatch estimates the training objective uses: with a batch "
                 "of B out of N images they drift once posteriors are sharp (the mutual information towards log N, "
                 "the total correlation below 0, which a true total correlation never is), so read this section "
                 "for the terms themselves.")
    return [Section("KL decomposition over the data set (Chen et al. 2018, eq. 2)", [table, Text(text)])]


def picture_sections(out: Path) -> list[Section]:
    """The run folder's pictures that exist, each with what it shows."""
    sections = []

    def add(title, *items):
        blocks = [b for b in items if not isinstance(b, Picture) or (out / b.path).exists()]
        if any(isinstance(b, Picture) for b in blocks):
            sections.append(Section(title, blocks))

    add("Latent traversals", Text("The 10 most used dimensions (rows, by KL on test images; columns -3 … 3 prior "
                                  "standard deviations around the first test image's code):"),
        Picture("traversals.png", "traversals"),
        Text("Animated: every dimension swept together, forth and back:"), Picture("traversals.gif", "traversals"))
    add("Latent map", Text("The codes (posterior means, or a deterministic encoder's codes) of up to 500 test images in "
                           "2-D, by PCA and by t-SNE, coloured by "
                           "label where the data has one:"), Picture("latent_map.png", "latent map"))
    add("Model-specific curves", Picture("training_curves.png", "training curves"))
    for stem, caption in model_pictures(out):  # the model's own (`GenerativeModel.extra_pictures`)
        add(caption, Picture(f"model-{stem}.png", caption))
    add("Samples for each class", Text("One row per class, z from the prior:"), Picture("classes.png", "classes"),
        Text("Style transfer (first column: a test image; then its code decoded with every label):"),
        Picture("style_transfer.png", "style transfer"))
    add("Completions", Text("Completions of test images (rows: the kept part, the completion, the truth):"),
        Picture("completions.png", "completions"))
    add("The canvas over time",
        Text("Read attention red, write attention green: four test images reconstructed (the posterior means) and "
             "four samples from the prior, one frame per glimpse; a strip per sequence in canvas/."),
        Picture("canvas/reconstructions.gif", "reconstructions over time"),
        Picture("canvas/samples.gif", "samples over time"), Picture("canvas/sample-0.png", "first sample's canvases"))
    add("Training curves", Picture("loss_curves.png", "loss curves"))
    add("Reconstructions, samples, interpolations", Text("Test reconstructions (top row: inputs):"),
        Picture("reconstructions.png", "reconstructions"), Text("Samples from the prior:"),
        Picture("samples.png", "samples"), Text("Interpolations between test images (ends: the inputs):"),
        Picture("interpolations.png", "interpolations"), Text("Animated, each pair along its line, forth and back:"),
        Picture("interpolations.gif", "interpolations"))
    return sections


def _best_line(out: Path) -> list[str]:
    """The checkpoint train.keep_best kept, where there is one."""
    from ..train.checkpoint import read_best

    best = read_best(out)
    if best is None:
        return []
    return [f"best checkpoint by {best['metric']} of the quick evaluations: step {best['step']} "
            f"({fmt(best['value'])}), in best/ (`vaekit.load(\"{out.name}/best\")`)"]


def build_report(out: Path, cfg, saved: dict, result: dict, model=None) -> Report:
    """Every section of a run's report, from its configuration, final evaluation, model and pictures."""
    opening = [Bullets([f"data: {saved['data_source']} ({saved['train_images']} train / {saved['test_images']} test "
                        f"images, shape {tuple(saved['image_shape'])})",
                        f"steps: {result['step']} (batch {cfg.train.batch_size}, lr {cfg.train.lr}, "
                        f"seed {cfg.train.seed})",
                        f"vaekit {saved['vaekit_version']}, torch {saved['torch_version']}",
                        *_best_line(out)]),
               Text("Per-image terms in nats (summed over pixels and latent dimensions, averaged over images)."),
               Table(["metric", "value"], [[k, fmt(v)] for k, v in result.items()
                                           if not k.startswith((_DIS, _DEC)) and not isinstance(v, list)])]
    notes = model.report_notes(read_jsonl(out / "metrics.jsonl")) if model is not None else []
    if notes:
        opening.append(Bullets(notes))
    own = [] if model is None else [Section(title, [Text(p) for p in paragraphs])
                                    for title, paragraphs in model.report_sections(result)]
    sections = [Section("", opening), *own, *confusion_section(result, saved.get("class_names")),
                *decomposition_section(result), *disentanglement_section(result), *picture_sections(out)]
    return Report(f"{cfg.model_name} on {cfg.data.name}", sections)


# --- rendering -------------------------------------------------------------------------------

def to_markdown(report: Report) -> str:
    lines = [f"# {report.title}"]
    for section in report.sections:
        if section.title:
            lines += ["", f"## {section.title}"]
        for block in section.blocks:
            lines.append("")
            if isinstance(block, Text):
                lines.append(block.text)
            elif isinstance(block, Bullets):
                lines += [f"- {item}" for item in block.items]
            elif isinstance(block, Table):
                lines += ["| " + " | ".join(block.header) + " |", "|---" * len(block.header) + "|"]
                lines += ["| " + " | ".join(row) + " |" for row in block.rows]
            elif isinstance(block, Picture):
                lines.append(f"![{block.alt}]({block.path})")
    return "\n".join(lines) + "\n"


_MIME = {".png": "image/png", ".gif": "image/gif"}
_STYLE = """body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}
th{background:#f2f2f2}td{font-variant-numeric:tabular-nums}img{max-width:100%;image-rendering:pixelated;
margin:.3rem .3rem 0 0}code{background:#f4f4f4;padding:0 .2rem}h2{border-bottom:1px solid #ddd;margin-top:2rem}"""


def _inline(text: str) -> str:
    """Escaped text, `code` spans as <code>."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(report: Report, folder: Path) -> str:
    """One self-contained page: the pictures of `folder` inline as data: URIs, the style in the page."""
    body = [f"<h1>{_inline(report.title)}</h1>"]
    for section in report.sections:
        if section.title:
            body.append(f"<h2>{_inline(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Text):
                body.append(f"<p>{_inline(block.text)}</p>")
            elif isinstance(block, Bullets):
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>")
            elif isinstance(block, Table):
                head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
                rows = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif isinstance(block, Picture):
                path = folder / block.path
                data = base64.b64encode(path.read_bytes()).decode("ascii")
                mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
                body.append(f'<img alt="{html.escape(block.alt)}" src="data:{mime};base64,{data}">')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(report.title)}</title><style>{_STYLE}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def write_report(out: Path, cfg, saved: dict, result: dict, model=None) -> None:
    """report.md and report.html, from one `build_report`."""
    from ..files import write_text_atomic

    report = build_report(out, cfg, saved, result, model)
    write_text_atomic(out / "report.md", to_markdown(report))
    write_text_atomic(out / "report.html", to_html(report, out))
