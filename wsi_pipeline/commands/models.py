"""``wsi-pipeline models``: list known models; ``models fetch NAME`` downloads one.

The download is the only network access in the pipeline, and only on request. It is
checked against the sha256 pinned in ``detectors/models.yaml`` before it is unpacked into
the cache (``$WSI_PIPELINE_MODELS`` or ``~/.cache/wsi-pipeline/models``).
"""

from __future__ import annotations

import json

NAME = "models"
HELP = "List known models (and whether they are downloaded); 'models fetch NAME' downloads one with a hash check."


def add_arguments(parser) -> None:
    parser.add_argument("action", nargs="?", choices=("list", "fetch"), default="list",
                        help="list (default) or fetch")
    parser.add_argument("name", nargs="?", help="model to fetch (see the list)")
    parser.add_argument("--cache", default=None, help="cache folder (default $WSI_PIPELINE_MODELS or ~/.cache/wsi-pipeline/models)")
    parser.add_argument("--force", action="store_true", help="download again even when cached")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run(args) -> int:
    from pathlib import Path

    from detectors.registry import cache_dir, cached_model, fetch_model, load_registry
    from tiling.errors import InputError

    registry = load_registry()
    cache = Path(args.cache) if args.cache else cache_dir()
    if args.action == "fetch":
        if not args.name:
            raise InputError(None, "models fetch needs a model NAME (see 'wsi-pipeline models')")
        folder = fetch_model(args.name, registry=registry, cache=cache, force=args.force)
        digest = (folder.parent / ".sha256") if not (folder / ".sha256").exists() else folder / ".sha256"
        note = "" if registry[args.name].sha256 else f" (no pinned hash; downloaded sha256 {digest.read_text().strip()})"
        print(f"{args.name}: {folder}{note}")
        print(f"use it with: --nuclei-model {folder}")
        return 0
    rows = []
    for name, entry in sorted(registry.items()):
        local = cached_model(name, cache=cache)
        rows.append({**entry.to_dict(), "cached": str(local) if local else None})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        state = f"downloaded: {r['cached']}" if r["cached"] else "not downloaded (wsi-pipeline models fetch " + r["name"] + ")"
        mpp = f"{r['mpp']} µm/px" if r["mpp"] else "mpp unknown"
        print(f"{r['name']:<14} {r['kind']:<11} {mpp:<12} {r['description']}")
        print(f"{'':<14} {state}")
    print(f"cache: {cache}")
    shipped = shipped_models()
    if shipped:
        print("shipped with the code, opt-in (not used unless named; licence in each folder):")
        for r in shipped:
            print(f"  {r['name']:<20} {r['task']:<8} {r['mpp']} µm/px  {r['status']}")
            print(f"  {'':<20} use: {r['use']}")
    return 0


def shipped_models() -> list[dict]:
    """The opt-in model folders under the repository's ``models/``: name, task, resolution,
    licence or validation status, and the option that uses each."""
    from wsi_pipeline.detection import SHIPPED_MODELS

    rows = []
    for folder in sorted(p for p in SHIPPED_MODELS.glob("*") if (p / "config.json").is_file()):
        cfg = json.loads((folder / "config.json").read_text())
        meta = cfg.get("wsi_pipeline") or {}
        if "n_rays" in cfg:  # a StarDist model folder
            rows.append({"name": folder.name, "task": "nuclei", "mpp": meta.get("mpp", "?"),
                         "status": meta.get("licence") or "licence: see LICENSE",
                         "use": f"--nuclei-model {folder.name}"})
        elif "crop_size" in cfg:  # a mitosis scorer
            status = "validated" if cfg.get("validated") else "NOT validated: candidates only, no mitotic rate"
            rows.append({"name": folder.name, "task": "mitosis", "mpp": cfg.get("mpp", "?"),
                         "status": f"{status}; licence: {folder.name}/LICENSE",
                         "use": f"--mitosis-model {folder}"})
    return rows
