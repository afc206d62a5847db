"""Make an opt-in model folder under ``models/`` from a ``scripts/train_monuseg.py`` run.

    .venv/bin/python scripts/ship_nuclei_model.py /tmp/monuseg-model --name stardist-monuseg \\
        --command "scripts/train_monuseg.py --data ... --test-data ... --minutes 65"

Copies the weights, ``config.json`` (with the weights' sha256 and the model's name, so a
corrupt or mixed-up folder is refused with one line) and ``thresholds.json``, and writes a
``LICENSE`` (CC BY-NC-SA 4.0, inherited from MoNuSeg) and ``model_card.md`` from the run's
``results.json``: training, validation and test tiles by name, the choices validation made,
and the test scores next to the weight-free detector's on the same tiles. Data are named
relative to their dataset, never by a path on the training machine. The folder is written
under a temporary name and renamed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LICENSE = """The weights in this folder were trained on MoNuSeg 2018 training images (TCGA) and their
nucleus annotations, which are licensed under the Creative Commons
Attribution-NonCommercial-ShareAlike 4.0 International licence (CC BY-NC-SA 4.0). The weights
are a derivative of that data and are distributed under the same licence:

    CC BY-NC-SA 4.0 - https://creativecommons.org/licenses/by-nc-sa/4.0/

Non-commercial use only; share adaptations under the same terms; credit MoNuSeg:
N. Kumar et al., "A Multi-Organ Nucleus Segmentation Challenge", IEEE TMI 39(5), 2020, and
N. Kumar et al., IEEE TMI 36(7), 2017. The rest of this repository keeps its own licence;
this folder is opt-in (`--nuclei-model {name}`) and no default detector uses it.
"""


def _row(name: str, r: dict) -> str:
    return f"| {name} | {r['aji']:.3f} | {r['f1@0.5']:.3f} | {r['pq@0.5']:.3f} | {r['n_gt']} | {r['n_pred']} |"


def model_card(name: str, res: dict, command: str, notes: str = "") -> str:
    tta = "yes" if res["tta"] else "no"
    lines = [
        f"# {name}: StarDist2D (torch) nuclei trained on MoNuSeg 2018 training tiles",
        "",
        "Opt-in: `--nuclei-model " + name + "`. Licence: CC BY-NC-SA 4.0 (see LICENSE); the project's "
        "default detector (weight-free) does not use it.",
        "",
        "## Model",
        "",
        f"- preset {res['preset']}, input {res['model_mpp']} µm/px (slides are resampled to it), "
        f"patch {res['patch_size']} px, batch {res['batch_size']}",
        f"- thresholds chosen on the validation tiles: prob {res['thresholds']['prob']:.3f}, "
        f"nms {res['thresholds']['nms']:.2f}; outlines redrawn on the hematoxylin map: "
        f"{'yes' if res['outlines_redrawn'] else 'no'}; mean of 8 mirror images: {tta}",
        f"- trained {res['steps']} steps in {res['train_seconds'] / 60:.0f} min on {res['device']} "
        f"({res['torch_threads']} threads), best epoch {res['best_epoch']} of {res['epochs']}",
        f"- recipe: `{command}`",
        "",
        "## Data (MoNuSeg 2018, 1000 x 1000 px H&E tiles at 40x)",
        "",
        "- training (monuseg-train): " + ", ".join(res["train_tiles"]),
        "- validation (monuseg-train, held back; chose the epoch, thresholds and outline redrawing): "
        + ", ".join(res["val_tiles"]),
        "- test (monuseg-dev, never used for any choice): " + ", ".join(res["test"]),
        "",
        "## Scores on the test tiles (monuseg-dev)",
        "",
        "| tile | AJI | F1@0.5 | PQ | nuclei (truth) | nuclei (found) |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_row(tile, r) for tile, r in res["test"].items()]
    lines.append(_row("**pooled**", res["test_pooled"]))
    wf = res.get("weightfree")
    lines += ["", "Pooled, for comparison on the same tiles:", "",
              "| detector | AJI | F1@0.5 | PQ | nuclei (truth) | nuclei (found) |", "|---|---|---|---|---|---|",
              _row(f"{name} (as shipped)", res["test_pooled"]),
              _row("same, the other outline choice", res["test_pooled_other_outlines"])]
    if wf:
        lines.append(_row("weight-free detector (default; 0.25 µm/px, per-tile calibration)", wf["test_pooled"]))
    lines += ["", "Validation scores (pooled over the validation tiles, per setting tried): "
              + json.dumps(res["validation"]), "",
              "## Caveats", "",
              "- Five organs (lung, breast, kidney, prostate, colon) from TCGA; no skin. Check it on your "
              "own slides (`wsi-pipeline evaluate`) before trusting its counts.",
              f"- Weights trained on {len(res['train_tiles'])} tiles.", ""]
    if notes:
        lines += ["## Notes", "", notes.strip(), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a train_monuseg.py output folder (results.json, config.json, weights)")
    ap.add_argument("--name", default="stardist-monuseg")
    ap.add_argument("--command", required=True, help="the training command, for the model card")
    ap.add_argument("--notes", type=Path, default=None, help="a Markdown file added to the model card as its Notes")
    args = ap.parse_args(argv)
    from detectors.registry import sha256_of
    from detectors.stardist.config import read_model_folder

    _, _, weights = read_model_folder(args.run)
    res = json.loads((args.run / "results.json").read_text())
    out = ROOT / "models" / args.name
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copy2(weights, tmp / weights.name)
    shutil.copy2(args.run / "thresholds.json", tmp / "thresholds.json")
    config = json.loads((args.run / "config.json").read_text())
    meta = config.setdefault("wsi_pipeline", {})
    meta.update(name=args.name, weights_sha256=sha256_of(weights), licence="CC BY-NC-SA 4.0")
    (tmp / "config.json").write_text(json.dumps(config, indent=2))
    (tmp / "LICENSE").write_text(LICENSE.format(name=args.name))
    (tmp / "model_card.md").write_text(model_card(args.name, res, args.command, args.notes.read_text() if args.notes else ""))
    keep = {k: res[k] for k in ("test", "test_pooled", "test_pooled_other_outlines", "validation", "train_tiles",
                                "val_tiles", "steps", "thresholds")}
    keep["weightfree_test_pooled"] = (res.get("weightfree") or {}).get("test_pooled")
    (tmp / "results.json").write_text(json.dumps(keep, indent=2))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"wrote {out.relative_to(ROOT)}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
