"""Leave-one-tile-out cross-validation of ``train_monuseg.py`` on the MoNuSeg dev tiles.

Fold K trains on 5 tiles, validates on tile K+1 and tests on tile K (``train_monuseg.py
--fold K``), so every tile is predicted once by a model that never saw it, neither in training
nor in the choice of thresholds and outlines. The test tiles are then pooled (AJI sums
intersections and unions over all tiles) and set beside the weight-free detector's scores on
the same tiles. The weight-free detector's one setting was fitted on all of these tiles; its
leave-one-tile-out figure comes from ``bench/bench_nuclei_weightfree.py --loo``.

    .venv/bin/python scripts/monuseg_cv.py --data ../shared/data/nuclei/monuseg-dev --out /tmp/cv \\
        --parallel 7 --device cuda --workers 2 --no-weightfree -- --steps 4850
    # after the folds: --aggregate-only (pool again, score the weight-free detector here)

4,850 steps are what session 3's reference run trained in 56 minutes on 2 CPU cores (fold 0
alone on the same cores, 56 minutes: 5,500 steps, test AJI 0.500 against 0.528 for its
4,850-step GPU run; both took an early epoch and a low threshold from their validation
tile). The 7 folds run in about 5 minutes on one H100 with 16 cores. Measured (2026-11-26), pooled over the 7
tiles: AJI 0.571, F1@0.5 0.801, PQ 0.582 (with ``--extra-pack`` of 5 CMU-1 tiles labelled by
the weight-free detector: 0.586 / 0.808 / 0.591); the weight-free detector 0.605 / 0.840 /
0.626.

Arguments after ``--`` go to every ``train_monuseg.py`` run (``--steps``, ``--minutes``,
``--preset``, ...). Each fold's model folder is ``OUT/fold-K`` and its log ``OUT/fold-K.log``;
the pooled scores go to ``OUT/cv.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

import train_monuseg

from wsi_pipeline.atomic import write_text_atomic


def run_folds(args, folds: list[int], extra: list[str]) -> dict[int, int]:
    """Run the folds, ``args.parallel`` at a time; {fold: exit status}."""
    source = ["--pack", str(args.pack)] if args.pack else ["--data", str(args.data)]
    threads = max(1, (os.cpu_count() or 1) // args.parallel)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    pending, running, status = list(folds), {}, {}
    while pending or running:
        while pending and len(running) < args.parallel:
            k = pending.pop(0)
            cmd = [sys.executable, str(ROOT / "train_monuseg.py"), *source, "--fold", str(k),
                   "--out", str(args.out / f"fold-{k}"), "--device", args.device, "--workers", str(args.workers),
                   "--no-weightfree", *extra]
            log = open(args.out / f"fold-{k}.log", "w")  # noqa: SIM115 (closed when the fold ends)
            running[k] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log)
            print(f"fold {k} started", flush=True)
        for k, (proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                status[k] = proc.returncode
                del running[k]
                print(f"fold {k} ended with exit status {proc.returncode}", flush=True)
        time.sleep(1)
    return status


def pool(args, samples) -> dict:
    """Per-tile and pooled scores of the folds' test predictions (and of the weight-free detector)."""
    from wsi_pipeline.evaluation import score_labels

    by_name = {s.name: s for s in samples}
    rows, totals, folds = {}, {}, {}
    for k in range(len(samples)):
        res_path = args.out / f"fold-{k}" / "results.json"
        if not res_path.exists():
            continue
        res = json.loads(res_path.read_text())
        folds[k] = {key: res[key] for key in ("train_tiles", "val_tiles", "steps", "fit_seconds", "device",
                                               "thresholds", "outlines_redrawn", "tta", "best_epoch")}
        for kind, fname in (("stardist", "test_labels.npz"), ("stardist_other_outlines", "test_labels_other_outlines.npz")):
            with np.load(args.out / f"fold-{k}" / fname) as z:
                for name in z.files:
                    sc = score_labels(by_name[name].labels, z[name])
                    rows.setdefault(name, {})[kind] = train_monuseg.summary(sc)
                    totals[kind] = sc if kind not in totals else totals[kind] + sc
    pooled = {k: train_monuseg.summary(v) for k, v in totals.items()}
    weightfree = None
    if not args.no_weightfree and rows:
        weightfree = train_monuseg.weightfree_scores([by_name[name] for name in rows])
        for name, row in rows.items():
            row["weightfree"] = weightfree["test"][name]
        pooled["weightfree"] = weightfree["test_pooled"]
    return {"folds": folds, "tiles": rows, "pooled": pooled, "n_tiles": len(rows), "n_tiles_in_data": len(samples),
            "weightfree_commit": weightfree and weightfree["commit"]}


def print_table(result: dict) -> None:
    names = {"stardist": "StarDist, as validation chose", "stardist_other_outlines": "  (the other outline choice)",
             "weightfree": "weight-free (fitted on all tiles)"}
    print(f"\n{result['n_tiles']} of {result['n_tiles_in_data']} tiles, each predicted by the fold that left it out")
    print(f"  {'':<36}{'AJI':>7}{'F1@0.5':>8}{'PQ':>7}")
    for kind, r in result["pooled"].items():
        print(f"  {names[kind]:<36}{r['aji']:>7.3f}{r['f1@0.5']:>8.3f}{r['pq@0.5']:>7.3f}")
    print("  per tile, AJI:", "  ".join(f"{n[:12]} {v['stardist']['aji']:.3f}"
                                        + (f"/{v['weightfree']['aji']:.3f}" if "weightfree" in v else "")
                                        for n, v in result["tiles"].items()))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path)
    ap.add_argument("--pack", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", default="all", help="comma-separated fold numbers, or all")
    ap.add_argument("--parallel", type=int, default=1, help="folds run at the same time")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--workers", type=int, default=0, help="batch-preparing processes per fold")
    ap.add_argument("--aggregate-only", action="store_true", help="run no fold; pool the folds already in OUT")
    ap.add_argument("--no-weightfree", action="store_true", help="do not score the weight-free detector")
    args = ap.parse_args(argv)
    if (args.data is None) == (args.pack is None):
        ap.error("give one of --data and --pack")
    samples = sorted(train_monuseg.load_samples(args), key=lambda s: s.name)
    folds = list(range(len(samples))) if args.folds == "all" else [int(k) for k in args.folds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    failed = []
    if not args.aggregate_only:
        t0 = time.perf_counter()
        status = run_folds(args, folds, extra)
        failed = sorted(k for k, rc in status.items() if rc != 0)
        print(f"{len(folds)} folds in {time.perf_counter() - t0:.0f} s", flush=True)
    result = pool(args, samples)
    result["failed_folds"] = failed
    write_text_atomic(args.out / "cv.json", json.dumps(result, indent=2))
    if result["tiles"]:
        print_table(result)
    for k in failed:
        print(f"error: fold {k} failed: see {args.out / f'fold-{k}.log'}", file=sys.stderr)
    return 1 if failed or not result["tiles"] else 0


if __name__ == "__main__":
    sys.exit(main())
