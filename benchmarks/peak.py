"""The machine's measured matrix-multiply peak, fp32 and bf16, so that "% of peak" is honest anywhere.

Peak = the best GFLOP/s of square matrix products (n = 1024, 2048) in one of two layouts, whichever
is faster here: one process with every core's thread, or one single-threaded process per core
multiplying at the same time (the layout `vaekit train` uses on a multi-core CPU; their rates are
summed). On a GPU, one process on the device. Run it alone on a quiet machine:

    python benchmarks/peak.py            # prints the table; --json for one JSON object
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time

import torch

SIZES = (1024, 2048)


def _rate(n: int, dtype: torch.dtype, device: str, seconds: float) -> float:
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(2):
        a @ b
    if device != "cpu":
        torch.cuda.synchronize()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    if device != "cpu":
        torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


def _one_process(dtype_name: str, threads: int, device: str, seconds: float, start=None, out=None) -> float:
    torch.set_num_threads(threads)
    dtype = getattr(torch, dtype_name)
    if start is not None:
        start.wait()
    best = max(_rate(n, dtype, device, seconds) for n in SIZES)
    if out is not None:
        out.put(best)
    return best


def measure_peak(dtype_name: str, device: str = "cpu", seconds: float = 1.0) -> dict:
    """{"gflops": best, "layout": which, "one_process": ..., "per_core": ...} for float32 or bfloat16."""
    if device != "cpu":
        r = _one_process(dtype_name, 1, device, seconds)
        return {"gflops": r, "layout": "one process on the GPU", "one_process": r, "per_core": None}
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    ctx = mp.get_context("spawn")
    one = ctx.Queue()
    p = ctx.Process(target=_one_process, args=(dtype_name, cores, device, seconds, None, one))
    p.start()
    whole = one.get()
    p.join()
    per_core = None
    if cores > 1:
        start, out = ctx.Barrier(cores), ctx.Queue()
        procs = [ctx.Process(target=_one_process, args=(dtype_name, 1, device, seconds, start, out))
                 for _ in range(cores)]
        for q in procs:
            q.start()
        per_core = sum(out.get() for _ in procs)
        for q in procs:
            q.join()
    best = max(whole, per_core or 0.0)
    layout = f"{cores} single-threaded processes" if per_core and per_core > whole else f"1 process x {cores} threads"
    return {"gflops": best, "layout": layout, "one_process": whole, "per_core": per_core, "cores": cores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=1.0, help="timed seconds per matrix size")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    peaks = {name: measure_peak(name, args.device, args.seconds) for name in ("float32", "bfloat16")}
    if args.json:
        print(json.dumps(peaks))
        return
    for name, p in peaks.items():
        print(f"{name:9s} peak {p['gflops']:8.1f} GFLOP/s ({p['layout']}; one process {p['one_process']:.1f}"
              + (f", per-core processes {p['per_core']:.1f})" if p["per_core"] else ")"))


if __name__ == "__main__":
    main()
