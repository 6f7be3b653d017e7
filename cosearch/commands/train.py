"""`cosearch train DIR|SPACE:ARCH --data D --epochs N --out OUT`: train an architecture,
recompile it with the target's schedule database without tuning anything, and write
a trained artifact whose meta.json carries held-out accuracy measured through the
compiled TVM module (``cosearch.train.deploy``).

Every input is validated before any work -> one-line error, exit 2, nothing written.
"""

from __future__ import annotations

import sys
import time

from cosearch.cli_args import add_schedule_options, positive_int
from cosearch.errors import CosearchError

HELP = "train an artifact's architecture (or SPACE:ARCH), recompile with the tuned schedules, write a trained artifact"
DESCRIPTION = """\
MODEL is an artifact folder written by 'cosearch tune' (its config names the space, architecture,
target and schedule database) or SPACE:ARCH (then --target is required). The network is trained on
the dataset's train split, recompiled against the schedule database without tuning (every task the
artifact had from the database must come from it again), and its held-out accuracy is computed with
the compiled TVM module."""  # argparse re-flows it


def register(sub) -> None:
    p = sub.add_parser("train", help=HELP, description=DESCRIPTION)
    p.add_argument("model", metavar="DIR|SPACE:ARCH", help="artifact folder or SPACE:ARCH")
    p.add_argument("--data", default="digits", metavar="D",
                   help="'digits' (embedded, default), PATH.npz with arrays x and y, or a folder with one sub-folder "
                   "of images per class")
    p.add_argument("--epochs", default="5", metavar="N", help="training epochs (default 5)")
    p.add_argument("--out", required=True, metavar="OUT", help="trained artifact folder (new, empty, or an artifact)")
    p.add_argument("--target", default=None, metavar="NAME|PATH", help="target (default: the artifact's)")
    add_schedule_options(p, default="the artifact's, else the target's default")
    p.add_argument("--batch-size", default="64", metavar="N", help="training batch size (default 64)")
    p.add_argument("--lr", default="0.05", metavar="LR", help="learning rate (default 0.05)")
    p.add_argument("--optimizer", default="sgd", metavar="OPT", help="sgd (Nesterov), adam or adamw (default sgd)")
    p.add_argument("--threads", default="1", metavar="N", help="torch training threads (default 1; see docs/training.md)")
    p.add_argument("--seed", default="0", metavar="S", help="seed of weights, batch order and the split (default 0)")
    p.add_argument("--limit", default=None, metavar="N", help="use a stratified subset of N images (quick runs)")
    p.add_argument("--repeat", default="30", metavar="N", help="timed repeats of the latency measurement (default 30)")
    p.set_defaults(func=run)


def _float(name: str, text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise CosearchError(f"{name} must be a number > 0, got {text!r}") from None
    if not v > 0 or v == float("inf"):
        raise CosearchError(f"{name} must be a finite number > 0, got {text!r}")
    return v


def run(args) -> int:
    t0 = time.perf_counter()
    epochs = positive_int("--epochs", args.epochs)
    batch = positive_int("--batch-size", args.batch_size)
    threads = positive_int("--threads", args.threads)
    seed = positive_int("--seed", args.seed, minimum=0)
    repeat = positive_int("--repeat", args.repeat)
    limit = None if args.limit is None else positive_int("--limit", args.limit, minimum=3)
    lr = _float("--lr", args.lr)
    from cosearch.train.trainer import OPTIMIZERS, TrainConfig

    if args.optimizer not in OPTIMIZERS:
        raise CosearchError(f"--optimizer {args.optimizer!r} is unknown; accepted: {', '.join(OPTIMIZERS)}")
    cfg = TrainConfig(epochs=epochs, batch_size=batch, lr=lr, optimizer=args.optimizer, seed=seed, threads=threads)
    from cosearch.train.deploy import train_artifact

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    res = train_artifact(args.model, out=args.out, data=args.data, config=cfg, target=args.target,
                         schedules=args.schedules, accept_foreign_schedules=args.accept_foreign_schedules,
                         split_seed=seed, limit=limit, measure_repeat=repeat, progress=say)
    a = res.accuracy
    by_source: dict[str, int] = {}
    for t in res.tasks:
        by_source[t["source"]] = by_source.get(t["source"], 0) + 1
    src = ", ".join(f"{n} {s}" for s, n in sorted(by_source.items()))
    tvm = "n/a" if a["tvm_heldout"] is None else f"{a['tvm_heldout']:.4f}"
    print(f"held-out accuracy ({a['heldout_n']} images): TVM {tvm}, PyTorch {a['torch_heldout']:.4f}"
          + ("" if a["agreement"] is None else f", argmax agreement {a['agreement']:.4f}"))
    print(f"learning curve (val): {', '.join(f'{v:.4f}' for v in a['curve'])}")
    print(f"tasks: {len(res.tasks)} ({src}); trials run: 0")
    if res.latency is not None:
        print(f"latency: median {res.latency.median_ms:.4f} ms (n={res.latency.n})")
    else:
        print(f"latency: not measured ({res.latency_note})")
    print(f"artifact: {res.out}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    return 0
