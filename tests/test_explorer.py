"""`vaekit serve`: the API refuses what it must (paths outside the runs, malformed and oversized
requests) with a 4xx and goes on serving, and the page works in a real headless Chromium (Debian's
/usr/bin/chromium driven by Playwright): no console errors, sliders and the class change the decoded
image, completions keep the kept pixels, DRAW's canvas plays. Screenshots go to test-artifacts/
(or $VAEKIT_TEST_ARTIFACTS). `vaekit compare` and report.html are tested here too."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import DERIVED, TINY, tiny_settings
from vaekit.cli.main import main
from vaekit.run import resolve_config, train_run

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("VAEKIT_TEST_ARTIFACTS", Path(__file__).resolve().parents[1] / "test-artifacts"))
# one run per family: unconditional, label-conditional, conditioned on a half, multi-stage, DRAW
FAMILIES = [("vae", "vae", {}), ("cvae", "cvae", {}), ("left", "cvae", {"condition": "left"}),
            ("msvae", "msvae", {}), ("draw", "draw", {})]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("explorer-runs")
    out = []
    for name, model, over in FAMILIES:
        settings = {k: v for k, v in tiny_settings(model, over).items() if k not in DERIVED}
        settings.update(over)
        cfg = resolve_config(model, base={"model": settings, "data": {"name": "digits"},
                                          "train": {"steps": 3, "batch_size": 16, "eval_every": 0}})
        train_run(cfg, root / name, progress=False, final_iw_samples=2, final_iw_images=5)
        out.append(root / name)
    return out


@pytest.fixture(scope="module")
def server(runs):
    from vaekit.explorer.api import Explorer
    from vaekit.explorer.server import make_server

    srv = make_server(Explorer(runs), port=0, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def request(server, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=60)
    conn.putrequest(method, path, skip_accept_encoding=True)  # the path as written: no client-side clean-up
    for k, v in {**({"Content-Length": str(len(body))} if body is not None else {}), **(headers or {})}.items():
        conn.putheader(k, v)
    conn.endheaders()
    if body is not None:
        conn.send(body)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, data


def get_json(server, path: str):
    status, data = request(server, "GET", path)
    return status, json.loads(data)


def image(data_uri: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))))


# --- the API --------------------------------------------------------------------------------------

def test_the_explorer_binds_to_localhost_by_default(server):
    assert server.server_address[0] == "127.0.0.1"


@pytest.mark.parametrize("path", ["/api/run/0/file/../config.json", "/api/run/0/file/..%2Fconfig.json",
                                  "/api/run/0/file/%2Fetc%2Fpasswd", "/api/run/0/file/config.json",
                                  "/api/run/0/file/checkpoints/latest.json", "/../../etc/passwd",
                                  "/api/run/0/../../etc/passwd", "/api/run/7/sample", "/api/run/-1/sample",
                                  "/api/run/x/sample", "/api/run/0/nothing", "/static/../../../etc/passwd"])
def test_paths_outside_the_runs_are_refused(server, path):
    status, data = request(server, "GET", path)
    assert 400 <= status < 500, (path, status)
    assert b"root:" not in data and b"model_name" not in data
    assert "error" in json.loads(data)


@pytest.mark.parametrize("path,status", [
    ("/api/run/0/sample?n=abc", 400), ("/api/run/0/sample?n=0", 400), ("/api/run/0/sample?n=100000", 400),
    ("/api/run/0/sample?seed=-3", 400), ("/api/run/0/decode?dims=0&values=nan", 400),
    ("/api/run/0/decode?dims=0,1&values=1", 400), ("/api/run/0/decode?dims=99999&values=1", 400),
    ("/api/run/0/decode?dims=" + ",".join(["0"] * 500) + "&values=1", 413),
    ("/api/run/0/interpolate?a=0&b=100000", 400), ("/api/run/0/interpolate?a=0&b=1&steps=5000", 400),
    ("/api/run/0/test_image?image=1e9", 400), ("/api/run/0/style?image=0", 400),
    ("/api/run/1/sample?label=99", 400), ("/api/run/0/sample?label=1", 400),
    ("/api/run/0/canvas", 400), ("/api/run/2/complete?image=0&keep=right", 400),
    ("/api/run/0/complete?image=0&keep=sideways", 400), ("/api/run/0/sample?" + "x" * 10_000, 414)])
def test_malformed_or_oversized_requests_get_a_4xx_with_a_message(server, path, status):
    got, data = request(server, "GET", path)
    assert got == status, (path, got, data[:200])
    assert json.loads(data)["error"]


def test_bad_bodies_are_refused_and_the_server_goes_on(server):
    path = "/api/run/0/complete?image=0&keep=draw"
    assert request(server, "POST", path, b"x" * (300 * 1024))[0] == 413
    assert request(server, "POST", path, b"not json")[0] == 400
    assert request(server, "POST", path, json.dumps({"mask": [[1, 0]]}).encode())[0] == 400
    assert request(server, "POST", path, json.dumps({"mask": [[2] * 8] * 8}).encode())[0] == 400
    assert request(server, "POST", path, b"{}", {"Content-Length": "-5"})[0] == 400
    assert request(server, "DELETE", "/api/runs")[0] == 501  # http.server's own refusal of unknown methods
    assert get_json(server, "/api/runs")[0] == 200  # still serving


def test_a_completion_keeps_the_kept_part_of_the_input(server):
    status, r = get_json(server, "/api/run/2/complete?image=5&keep=left")  # the CVAE conditioned on the left half
    assert status == 200 and r["method"] == "prior"
    done, truth = image(r["completion"]), image(r["truth"])
    w = done.shape[1]
    np.testing.assert_array_equal(done[:, : w // 2], truth[:, : w // 2])
    mask = np.ones((8, 8), int)
    mask[2:6, 3:7] = 0  # a hand-drawn hole, completed by inference with the unconditional VAE
    status, data = request(server, "POST", "/api/run/0/complete?image=5&keep=draw&steps=5",
                           json.dumps({"mask": mask.tolist()}).encode())
    r = json.loads(data)
    assert status == 200 and r["method"] == "optimise"
    kept = np.kron(mask, np.ones((12, 12), int)).astype(bool)  # the PNGs are enlarged 12x
    done, truth = image(r["completion"]), image(r["truth"])
    np.testing.assert_array_equal(done[kept], truth[kept])
    assert (done[~kept] != truth[~kept]).any()


def test_the_api_answers_for_every_family(server):
    status, info = get_json(server, "/api/runs")
    assert status == 200
    by = {r["name"]: r for r in info["runs"]}
    assert by["cvae"]["classes"] == 10 and by["msvae"]["stages"] and by["draw"]["canvas"]
    assert by["left"]["completion"] == ["left"] and "draw" in by["vae"]["completion"]
    assert {c["key"] for c in info["comparison"]["columns"]} >= {"test/elbo", "test/iwae_nll"}
    for path in ["/api/run/0/decode?dims=0&values=2", "/api/run/1/sample?n=4&label=3", "/api/run/1/style?image=3",
                 "/api/run/3/stages?n=2", "/api/run/0/interpolate?a=0&b=1&steps=3", "/api/run/4/canvas?seed=2",
                 "/api/run/4/canvas?image=3", "/api/run/0/curves"]:
        status, r = get_json(server, path)
        assert status == 200, (path, r)
    status, r = get_json(server, "/api/run/4/canvas?image=3")
    assert len(r["frames"]) == 3 and len(r["reads"]) == 3 and r["writes"][0] is not None
    status, data = request(server, "GET", "/api/run/4/file/report.html")
    assert status == 200 and b"<html" in data
    assert "latent_map.png" in by["vae"]["files"] and "latent_map.png" not in by["draw"]["files"]
    status, data = request(server, "GET", f"/api/run/{by['vae']['id']}/file/latent_map.png")
    assert status == 200 and data.startswith(b"\x89PNG")


# --- compare and report.html --------------------------------------------------------------------

def test_vaekit_compare_prints_one_row_per_run_and_json(runs, capsys):
    assert main(["compare", *map(str, runs)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + len(runs) + 1 and "-log p(x) IWAE" in out[0] and out[-1].startswith("* best among")
    assert main(["compare", *map(str, runs[:2]), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    saved = json.loads((runs[0] / "evaluation.json").read_text())
    assert rows[0]["test/elbo"] == saved["test/elbo"] and rows[1]["model"] == "cvae"
    assert main(["compare", str(runs[0]), str(runs[0] / "nope")]) == 2


def test_report_html_is_self_contained_and_has_every_section_of_report_md(runs):
    import re

    for run in runs:
        md, page = (run / "report.md").read_text(), (run / "report.html").read_text()
        for title in re.findall(r"^## (.+)$", md, flags=re.M):
            assert f"<h2>{title.replace('&', '&amp;')}</h2>" in page or title in page, (run.name, title)
        sources = re.findall(r'(?:src|href)="([^"]*)"', page)
        assert sources and all(s.startswith("data:") for s in sources), run.name
        assert md.count("![") == page.count("<img")
        assert "http://" not in page and "https://" not in page


# --- the page, in a real browser -----------------------------------------------------------------

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser_page(server, tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.skip("no browser: Debian's chromium is not installed (scripts/ensure-browser.sh installs it as root)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        context = browser.new_context(viewport={"width": 1700, "height": 1300})
        page = context.new_page()
        page.problems = []
        page.on("console", lambda m: page.problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        page.wait_for_selector("#r0-decoded[src^='data:']", timeout=60_000)
        yield page
        browser.close()


def _src_changes(page, selector: str, action, timeout=30_000) -> str:
    before = page.get_attribute(selector, "src")
    action()
    page.wait_for_function("([s, b]) => document.querySelector(s).getAttribute('src') !== b", arg=[selector, before],
                           timeout=timeout)
    return page.get_attribute(selector, "src")


def test_the_page_loads_every_run_with_no_console_errors(browser_page):
    page = browser_page
    for i in range(len(FAMILIES)):
        page.wait_for_selector(f"#r{i}-decoded[src^='data:']", timeout=60_000)
        page.wait_for_selector(f"#r{i}-samples[src^='data:']", timeout=60_000)
    assert page.locator("#comparison-table tbody tr").count() == len(FAMILIES)
    page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=True)
    assert page.problems == []


def test_moving_a_slider_changes_the_decoded_image(browser_page):
    page = browser_page
    page.focus("#r0-slider-0")
    after = _src_changes(page, "#r0-decoded", lambda: page.keyboard.press("End"))  # the slider to +3 sd
    assert page.input_value("#r0-slider-0") == "3"
    again = _src_changes(page, "#r0-decoded", lambda: page.keyboard.press("Home"))
    assert again != after
    assert page.problems == []


def test_switching_the_class_of_a_conditional_model_changes_its_image(browser_page):
    page = browser_page
    first = page.get_attribute("#r1-decoded", "src")
    seven = _src_changes(page, "#r1-decoded", lambda: page.select_option("#r1-label", "7"))
    assert seven != first
    page.screenshot(path=str(ARTIFACTS / "explorer-class.png"), full_page=True)
    assert page.problems == []


def test_a_completion_in_the_page_keeps_the_kept_part(browser_page):
    page = browser_page
    page.fill("#r2-complete-image", "4")
    page.click("#r2-complete-go")
    page.wait_for_selector("#r2-complete-completion[src^='data:']", timeout=30_000)
    done, truth = image(page.get_attribute("#r2-complete-completion", "src")), \
        image(page.get_attribute("#r2-complete-truth", "src"))
    np.testing.assert_array_equal(done[:, : done.shape[1] // 2], truth[:, : truth.shape[1] // 2])
    # a hole drawn with the mouse on the unconditional VAE's test image
    page.select_option("#r0-keep", "draw")
    box = page.locator("#r0-mask").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.7, box["y"] + box["height"] * 0.6, steps=8)
    page.mouse.up()
    page.click("#r0-complete-go")
    page.wait_for_selector("#r0-complete-completion[src^='data:']", timeout=60_000)
    kept, done, truth = (image(page.get_attribute(f"#r0-complete-{k}", "src")) for k in ("kept", "completion", "truth"))
    # the kept pixels: those shown as they are (missing ones are shown grey, 128; a kept pixel of that
    # grey is left out of the comparison)
    unchanged = (kept == truth) & (kept != 128)
    assert (kept != truth).any()
    np.testing.assert_array_equal(done[unchanged], truth[unchanged])
    page.locator("#r0-panel").screenshot(path=str(ARTIFACTS / "explorer-completion.png"))
    assert page.problems == []


def test_the_stages_and_draws_canvas_play(browser_page):
    page = browser_page
    page.click("#r3-stages-go")
    page.wait_for_selector("#r3-stages[src^='data:']", timeout=30_000)
    page.click("#r4-canvas-play")
    page.wait_for_function("() => document.querySelector('#r4-canvas-step').textContent === 'glimpse 3 of 3'",
                           timeout=30_000)
    page.locator("#r4-panel").screenshot(path=str(ARTIFACTS / "explorer-draw.png"))
    assert page.problems == []


def test_report_html_opens_from_the_file_system_with_its_pictures(browser_page, runs):
    page = browser_page.context.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto((runs[4] / "report.html").as_uri())
    widths = page.eval_on_selector_all("img", "imgs => imgs.map(i => i.naturalWidth)")
    assert widths and all(w > 0 for w in widths)
    page.screenshot(path=str(ARTIFACTS / "report-html.png"), full_page=True)
    page.close()
    assert problems == []
    shutil.copyfile(runs[4] / "report.html", ARTIFACTS / "report-draw.html")


def test_serve_refuses_a_taken_port_and_a_missing_run_in_one_line(runs, tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert main(["serve", str(runs[0]), "--port", str(s.getsockname()[1])]) == 2
    assert "cannot listen" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "nothing")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_compare_keeps_p_x_and_p_x_given_y_apart_and_stars_only_comparable_runs(tmp_path):
    """A CVAE told the left half bounds -log p(x|y), a VAE -log p(x): separate columns, no star across
    them, and the CVAE's -log p(missing | kept) has a column of its own."""
    from vaekit.run.compare import compare_runs, format_table

    runs = []
    for name, over in (("vae", {}), ("cvae", {"condition": "left"}), ("vae", {"latent_dim": 3})):
        cfg = resolve_config(name, base={"data": {"name": "digits"}, "model": {**TINY, **over}},
                             overrides=["train.steps=3", "train.batch_size=32", "train.eval_every=0"])
        out = tmp_path / f"{name}{len(runs)}"
        train_run(cfg, out, progress=False, final_iw_samples=2, final_iw_images=5)
        runs.append(out)
    columns, rows = compare_runs(runs)
    keys = [k for k, _, _ in columns]
    assert "test/iwae_nll" in rows[0] and "test/iwae_nll" not in rows[1] and "test/iwae_nll|y" in rows[1]
    assert "completion/left/nll" in rows[1] and "completion/left/nll" in keys
    assert rows[0]["condition"] == "none" and rows[1]["condition"] == "left"
    # the CVAE is alone among runs conditioned on the left half: starred nowhere, whatever its numbers
    assert rows[1]["best"] == []
    vae_best = {k for r in (rows[0], rows[2]) for k in r["best"]}
    assert "test/iwae_nll" in vae_best and "test/ssim" in vae_best
    table = format_table(columns, rows)
    assert "-log p(x|y) IWAE" in table and "-log p(missing | left kept)" in table and "* best among" in table


def test_compare_groups_runs_that_differ_only_in_the_seed(tmp_path, capsys):
    """Three seeds of one configuration are one row (mean ± sd over them, their count); another
    configuration stays its own row; --each-run shows every run."""
    import json
    import statistics

    from vaekit.cli.main import main

    runs = []
    for seed, latent in ((0, 4), (1, 4), (2, 4), (0, 3)):
        cfg = resolve_config("vae", base={"data": {"name": "digits"}, "model": {**TINY, "latent_dim": latent}},
                             overrides=["train.steps=3", "train.batch_size=32", "train.eval_every=0",
                                        f"train.seed={seed}", f"train.log_every={1 + seed}"])
        out = tmp_path / f"s{seed}-z{latent}"
        train_run(cfg, out, progress=False, final_iw_samples=2, final_iw_images=5)
        runs.append(out)
    assert main(["compare", *map(str, runs), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [r["seeds"] for r in table["rows"]] == [3, 1]
    elbos = [json.loads((r / "evaluation.json").read_text())["test/elbo"] for r in runs[:3]]
    assert table["rows"][0]["test/elbo"] == pytest.approx(statistics.mean(elbos))
    assert table["rows"][0]["test/elbo_sd"] == pytest.approx(statistics.stdev(elbos))
    assert main(["compare", *map(str, runs)]) == 0
    assert " ± " in capsys.readouterr().out
    assert main(["compare", *map(str, runs), "--json", "--each-run"]) == 0
    assert len(json.loads(capsys.readouterr().out)["rows"]) == 4
