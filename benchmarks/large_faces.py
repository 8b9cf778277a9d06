"""How often the default detector calls a face fake, by the face's size: real and fake test faces per size band.

Every face image of a split (default: `effnet_lite0`'s test split, the rows the default's members never trained on)
goes through `analyze_image` with the default settings; the most-fake face's box side puts the image in a size band
(the verdict's box, in the file's pixels: the same as the analysed pixels the rule in `udfd.pipeline` measures for
every dev file, all far under UDFD_WORK_SIDE). Per band and source: how many real faces are called fake, how many fakes, which uncertain
reasons the verdicts carry, and the ROC-AUC of fakes against reals. Written as JSON.

    HF_HUB_OFFLINE=1 python benchmarks/large_faces.py
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter, defaultdict
from pathlib import Path

from tqdm import tqdm

from udfd.config import Settings
from udfd.evaluation.metrics import binary_metrics
from udfd.pipeline import analyze_image

log = logging.getLogger("benchmarks.large_faces")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
BANDS = (0, 150, 250, 300, 400, 10**6)  # box side in pixels: [lo, hi)


def _band(side: int) -> str:
    lo = max(b for b in BANDS if b <= side)
    hi = min(b for b in BANDS if b > side)
    return f"{lo}+" if hi == BANDS[-1] else f"{lo}-{hi - 1}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "faces")
    p.add_argument("--split-file", type=Path, default=PROJECT_ROOT / "models" / "udfd-effnet-lite0" / "split.json")
    p.add_argument("--split", default="test")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "large_faces.json")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    rels = json.loads(args.split_file.read_text())["splits"][args.split]
    rows = []
    for rel in tqdm(rels, desc="images", unit="img"):
        v = analyze_image(args.data / rel, settings=settings)
        face = max(v.faces, key=lambda f: f.fake_prob)
        x0, y0, x1, y1 = face.box
        rows.append({"file": rel, "label": int(rel.split("/")[0] == "fake"), "source": rel.split("/")[1],
                     "side": max(x1 - x0, y1 - y0), "fake_prob": face.fake_prob, "called_fake": face.label == "fake",
                     "reason": face.uncertain_reason})
    bands: dict[str, dict[str, object]] = {}
    grouped: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        grouped[_band(r["side"])].append(r)
    for name in sorted(grouped, key=lambda b: int(b.split("-")[0].rstrip("+"))):
        rs = grouped[name]
        reals, fakes = [r for r in rs if not r["label"]], [r for r in rs if r["label"]]
        m = binary_metrics([r["label"] for r in rs], [r["fake_prob"] for r in rs]) if reals and fakes else {}
        per_source: dict[str, dict[str, int]] = defaultdict(lambda: {"n": 0, "called_fake": 0})
        for r in rs:
            per_source[f"{'fake' if r['label'] else 'real'}/{r['source']}"]["n"] += 1
            per_source[f"{'fake' if r['label'] else 'real'}/{r['source']}"]["called_fake"] += int(r["called_fake"])
        bands[name] = {"reals": len(reals), "reals_called_fake": sum(r["called_fake"] for r in reals),
                       "reasons": dict(Counter(r["reason"] or "certain" for r in rs)),
                       "fakes": len(fakes), "fakes_called_fake": sum(r["called_fake"] for r in fakes),
                       "roc_auc": m.get("roc_auc"), "per_source": dict(sorted(per_source.items()))}
    report = {"command": "HF_HUB_OFFLINE=1 python benchmarks/large_faces.py"
                         + (f" --split {args.split}" if args.split != "test" else ""),
              "detectors": list(settings.detectors), "split": f"{args.split_file.name}:{args.split}",
              "images": len(rows), "bands": bands, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    log.info("wrote %s", args.out)
    for name, b in bands.items():
        log.info("%-8s %s", name, {k: v for k, v in b.items() if k != "per_source"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
