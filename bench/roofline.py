"""How close ONNX Runtime runs each bench network to this CPU's FP32 peak, and so what a
"TVM at r x ORT" target asks for. Per network, ORT's end-to-end time (batch 1) is timed
interleaved with the best large GEMM this machine runs (ORT/MLAS ``MatMul`` and PyTorch ``mm``,
n = ``--n``, the fastest in each round), at the same thread count (each of ``--threads``), round after round -- these shared machines drift by tens
of percent within a minute, so only ratios taken in one window mean anything. Reported per
network: GFLOP/s of ORT on it (Conv/Gemm/MatMul FLOPs, ``bench.common.onnx_flops``), of the GEMM,
their ratio, and the GFLOP/s TVM would need to run at ``--ratio`` x ORT's time, as a share of
the GEMM rate (above 1: beyond what this machine's best GEMM reaches).

    python bench/roofline.py                                   # the space's networks
    python bench/roofline.py --nets nb201,resnet50 --rounds 9

Writes ``bench/results/roofline.json`` (the CPU named).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.common import LIGHT_MODELS, SPACE_NETS, load_net, matmul_model, onnx_flops, ort_session, print_table, time_calls, write_results  # noqa: E402


def gemm_calls(n: int, threads: int) -> dict:
    """name -> (call, FLOPs) of the large-GEMM probes at ``threads`` threads."""
    import torch

    sess = ort_session(matmul_model(n), threads)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flop = 2.0 * n ** 3

    def mm():
        torch.set_num_threads(threads)
        return torch.mm(ta, tb)

    return {f"gemm-ort-{n}": (lambda: sess.run(None, {"a": a, "b": b}), flop), f"gemm-torch-{n}": (mm, flop)}


def run_net(name: str, args, threads: int) -> dict:
    model, x, _ = load_net(name)
    flop = onnx_flops(model)
    s = ort_session(model, threads)
    iname = s.get_inputs()[0].name
    calls = {"net-ort": (lambda: s.run(None, {iname: x}), flop)}
    for n in args.sizes:
        calls.update(gemm_calls(n, threads))
    gemms = [k for k in calls if k.startswith("gemm-")]
    samples: dict[str, list[float]] = {k: [] for k in calls}
    for r in range(args.rounds):
        for k in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            samples[k] += time_calls(calls[k][0], repeat=3, warmup=1, min_ms=20.0)["samples"]
    gf = {k: calls[k][1] / float(np.median(v)) / 1e6 for k, v in samples.items()}
    # per round the net's rate over the best GEMM's, then the median: drift cancels within a round
    per = len(samples["net-ort"]) // args.rounds
    ratios = []
    for r in range(args.rounds):
        sl = slice(r * per, (r + 1) * per)
        g = max(calls[k][1] / float(np.median(samples[k][sl])) / 1e6 for k in gemms)
        ratios.append(flop / float(np.median(samples["net-ort"][sl])) / 1e6 / g)
    share = float(np.median(ratios))
    return {"net": name, "gflop": round(flop / 1e9, 4), "ort_ms": round(float(np.median(samples["net-ort"])), 4),
            "ort_gflops": round(gf["net-ort"], 1), "gemm_best_gflops": round(max(gf[k] for k in gemms), 1),
            "gemm_gflops": {k: round(gf[k], 1) for k in gemms}, "ort_share_of_gemm": round(share, 3),
            f"needed_share_at_{args.ratio}x": round(share / args.ratio, 3), "rounds": args.rounds,
            "threads": threads}


def main(argv: list[str] | None = None) -> int:
    from cosearch.compile.target import load_target

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default="mbv2-small,nb201,front-lo,front-mid,front-hi")
    ap.add_argument("--n", default="512,1024,2048", help="GEMM sizes; the fastest in each round counts")
    ap.add_argument("--threads", default="1,2", help="thread counts, each timed on its own (default 1,2)")
    ap.add_argument("--ratio", type=float, default=0.8, help="the TVM/ORT time ratio asked for (default 0.8)")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    nets = args.nets.split(",")
    known = list(SPACE_NETS) + list(LIGHT_MODELS)
    bad = [n for n in nets if n not in known]
    try:
        counts = [int(t) for t in args.threads.split(",")]
        args.sizes = [int(n) for n in args.n.split(",")]
    except ValueError:
        counts, args.sizes = [0], [0]
    if bad or min(counts) < 1 or args.rounds < 1 or min(args.sizes) < 64 or not 0 < args.ratio:
        print(f"error: bad arguments ({', '.join(bad) or 'threads >= 1, rounds >= 1, n >= 64, ratio > 0'}); nets accepted: "
              f"{', '.join(known)}", file=sys.stderr)
        return 2
    t0 = time.time()
    rows = [run_net(n, args, t) for n in nets for t in counts]
    print_table(rows, ["net", "threads", "gflop", "ort_ms", "ort_gflops", "gemm_best_gflops", "ort_share_of_gemm",
                       f"needed_share_at_{args.ratio}x"])
    key = load_target("host").machine_key()
    p = write_results("roofline", {**vars(args), "nets": nets, "machine_key": key}, rows, args.out, machine_key=key,
                      wall_s=round(time.time() - t0, 1))
    print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
