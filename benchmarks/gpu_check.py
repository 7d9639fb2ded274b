"""The GPU check (run by benchmarks/gpu_check.sh on a machine with one CUDA GPU; under 10 minutes).

Prints images/s of Trainer steps for the default conv VAE, beta-TCVAE with Chen et al.'s MLP at batch
2048 and DRAW (T = 64), each in fp32 and bf16, with the training images on the device (the trainer's
data-on-device path, checked) and `torch.cuda.set_sync_debug_mode("error")` around the timed steps, so
a step that makes the host wait for the GPU fails loudly; then the default VAE with train.compile; then
a one-process NCCL group through `vaekit train` (torchrun's environment, world of one). Writes a JSON
summary to $OUT/gpu_check.json when OUT is set.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from vaekit.config import TrainConfig  # noqa: E402
from vaekit.data import load_dataset  # noqa: E402
from vaekit.errors import VaekitError  # noqa: E402
from vaekit.models import build_model, model_config  # noqa: E402
from vaekit.train import Trainer  # noqa: E402


def data_for(name: str):
    try:
        return load_dataset(name, "train")
    except VaekitError as e:
        print(f"  ({name} not available here: {e}; using scikit-learn's digits instead)", flush=True)
        return load_dataset("digits", "train")


CASES = [
    ("vae_conv", "vae", {}, "fashion-mnist", 128, 60),
    ("btcvae_mlp_2048", "btcvae", {"architecture": "mlp", "norm": "none"}, "dsprites", 2048, 30),
    ("draw_t64", "draw", {}, "fashion-mnist", 100, 20),
]


def timed_steps(name, settings, data, batch, steps, precision, compile_=False) -> dict:
    torch.manual_seed(0)
    if name == "btcvae":
        settings = {**settings, "dataset_size": len(data)}
    model = build_model(name, model_config(name, settings), data.image_shape)
    cfg = TrainConfig(steps=1, batch_size=batch, eval_every=0, checkpoint_every=10**9, device="cuda",
                      precision=precision, compile=compile_, log_every=10**6)
    trainer = Trainer(model, data, cfg, progress=False)
    for _ in range(5 if not compile_ else 3):  # warm-up (and compilation)
        trainer.train_step(trainer.batch_at(trainer.step))
        trainer.step += 1
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        t0 = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(trainer.batch_at(trainer.step))
            trainer.step += 1
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"images_per_s": steps * batch / seconds, "s_per_step": seconds / steps,
            "data_on_device": trainer.data_on_device, "precision": trainer.precision}


def main() -> int:
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible; nothing to check", file=sys.stderr)
        return 2
    print(f"GPU: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    results, failures = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": []}, 0
    for label, name, settings, data_name, batch, steps in CASES:
        data = data_for(data_name)
        for precision in ("fp32", "bf16"):
            try:
                r = timed_steps(name, settings, data, batch, steps, precision)
                print(f"{label:18s} {precision}: {r['images_per_s']:>10,.0f} images/s ({r['s_per_step'] * 1e3:.1f} ms/step, "
                      f"data on device: {r['data_on_device']})", flush=True)
                results["rows"].append({"case": label, **r})
            except Exception as e:  # a host sync under set_sync_debug_mode raises RuntimeError
                failures += 1
                print(f"{label:18s} {precision}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:300]}", flush=True)
                results["rows"].append({"case": label, "precision": precision, "error": str(e)[:1000]})
    try:
        r = timed_steps("vae", {}, data_for("fashion-mnist"), 128, 60, "bf16", compile_=True)
        print(f"{'vae_conv compiled':18s} bf16: {r['images_per_s']:>10,.0f} images/s", flush=True)
        results["rows"].append({"case": "vae_conv_compiled", **r})
    except Exception as e:
        failures += 1
        print(f"vae_conv compiled: FAILED {type(e).__name__}: {str(e).splitlines()[0][:300]}", flush=True)
    out = Path(os.environ.get("OUT", "/tmp")) / "gpu_check_nccl"
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "29517", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", "-m", "vaekit", "train", "vae",
           "--data", "digits", "--steps", "20", "--device", "cuda", "--out", str(out), "--iw-samples", "0",
           "--quiet", "--set", "train.eval_every=0", "--set", "train.final_eval_images=100"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    print(f"NCCL smoke run (torchrun, 1 process): exit {r.returncode}", flush=True)
    if r.returncode:
        failures += 1
        print(r.stderr[-2000:])
    results["nccl_exit"] = r.returncode
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(json.dumps(results, indent=1))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
