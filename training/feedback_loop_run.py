"""The feedback loop for real, on dev faces: flags -> protector -> drift -> retrain -> guard (issue 15 part 10).

    python training/feedback_loop_run.py --parent runs/final_lr3e-4 --data ../shared/data/faces \
        --work runs/feedback_loop --out benchmarks/results/feedback_loop.json

Nothing here is simulated except the visitors. Starting from a trained `timm` checkpoint (a copy of `--parent`,
so the embedded models are never touched):
1. Training tree: a seeded subset (`--train-images`) of the parent's own train split (symlinks), so that
   retraining fits the CPU budget; the trusted guard set is `--trusted` faces of the parent's test split.
2. A protector is trained on this checkpoint's features (training/train_protector.py).
3. Visitors flag `--honest` other test-split faces the checkpoint gets wrong, with their true label, and
   `--poisoned` faces it gets right, with the wrong label. Each flag goes through the protector and into a real
   feedback store (udfd/feedback/store.py) with its image.
4. `training/retrain.py` runs as the product runs it: drift check on the accepted flags, retraining through
   train_image.py with the parent's recorded recipe, guard on the trusted set, promotion or rejection.
What happened and why is written as JSON (`--out`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import list_samples  # noqa: E402

log = logging.getLogger("training.feedback_loop_run")
NAME = "loop"  # the detector's short name inside this run (UDFD_MODEL_LOOP)


def link_tree(data: Path, rels: list[str], out: Path) -> Path:
    """out/<data name>/<rel> -> data/<rel> for every rel (plus the manifest), as the training scripts read trees."""
    root = out / data.name
    for rel in rels:
        link = root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(data / rel)
    for manifest, where in ((data / "manifest.csv", root), (data.parent / "manifest.csv", out)):
        if manifest.is_file():
            (where / "manifest.csv").symlink_to(manifest)
    return root


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parent", type=Path, required=True, help="a timm checkpoint folder made by train_image.py or loso_frozen.py")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--work", type=Path, default=Path("runs/feedback_loop"))
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/feedback_loop.json"))
    p.add_argument("--train-images", type=int, default=1500)
    p.add_argument("--trusted", type=int, default=300)
    p.add_argument("--honest", type=int, default=60)
    p.add_argument("--poisoned", type=int, default=20)
    p.add_argument("--train-args", default="--epochs 1", help="passed to retrain.py --train-args")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data, work = args.data.resolve(), args.work.resolve()
    if work.exists():
        shutil.rmtree(work)
    model = work / "model"
    shutil.copytree(args.parent, model)
    os.environ[f"UDFD_MODEL_{NAME.upper()}"] = f"local-dir:{model}"
    os.environ["UDFD_FEEDBACK_DIR"] = str(work / "feedback")
    rng = np.random.default_rng(args.seed)
    split = json.loads((model / "split.json").read_text(encoding="utf-8"))["splits"]
    train_rels = sorted(rng.choice(split["train"], min(args.train_images, len(split["train"])), replace=False))
    test = list(rng.permutation(split["test"]))
    trusted_rels, candidates = sorted(test[:args.trusted]), test[args.trusted:]
    tree = link_tree(data, train_rels, work / "train")
    trusted = link_tree(data, trusted_rels, work / "trusted")
    cache = work / "cache"
    started = time.time()

    from training.train_protector import main as train_protector

    train_protector(["--detector", NAME, "--data", str(tree), "--output", str(work / "protector"),
                     "--cache-dir", str(cache), "--epochs", "150"])
    flags = flag(candidates, data, work, honest=args.honest, poisoned=args.poisoned)

    from training.retrain import main as retrain

    result = retrain(["--detector", NAME, "--data", str(tree), "--eval-data", str(trusted), "--min-count", "10",
                      "--work-dir", str(work / "retrain"), "--cache-dir", str(cache),
                      "--train-args", args.train_args, "--version", "loop-r1"])
    report = {"command": "python training/feedback_loop_run.py " + " ".join(argv or sys.argv[1:]),
              "parent": str(args.parent), "parent_version": json.loads((args.parent / "config.json").read_text(
                  encoding="utf-8"))["udfd"].get("version"),
              "training_images": len(train_rels), "trusted_images": len(trusted_rels), "flags": flags,
              "retrain": result, "minutes": round((time.time() - started) / 60, 1), "load_avg": os.getloadavg()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")
    log.info("%s: %s", result.get("action"), result.get("guard", {}).get("reason"))
    return report


def flag(candidates: list[str], data: Path, work: Path, *, honest: int, poisoned: int) -> dict[str, Any]:
    """Visitors' flags on test-split faces: honest ones where the checkpoint is wrong, poisoned ones where it is
    right (labelled the other way), screened by the run's protector and stored with their images."""
    import cv2

    from udfd.config import Settings
    from udfd.faces import detect_faces, get_face_detector
    from udfd.feedback.protector import load_protector
    from udfd.feedback.store import FeedbackStore, new_record
    from udfd.loader import load_detector
    from udfd.media import read_image

    settings = Settings.from_env()
    det = load_detector(NAME, settings=settings)
    protector = load_protector(f"local-dir:{work / 'protector'}")
    store = FeedbackStore(work / "feedback")
    truth = {s.path: s.label for s in list_samples(data)}
    faces = get_face_detector(settings.faces)
    size = int(json.loads((work / "model" / "config.json").read_text(encoding="utf-8"))["udfd"].get("crop_size", 160))
    wanted = {"honest": honest, "poisoned": poisoned}
    made: dict[str, list[dict[str, Any]]] = {"honest": [], "poisoned": []}
    for rel in candidates:
        if all(len(made[k]) >= n for k, n in wanted.items()):
            break
        face = detect_faces(read_image(data / rel).pixels, settings.faces, detector=faces)[0]
        if not face.face_found:
            continue
        crop = cv2.resize(face.pixels, (size, size), interpolation=cv2.INTER_AREA)  # as training/data.py crops
        batch = det.preprocess([crop])
        score = det.predict(batch)[0]
        right = score.is_fake == bool(truth[rel])
        kind = "poisoned" if right else "honest"
        if len(made[kind]) >= wanted[kind]:
            continue
        user = ("real" if truth[rel] else "fake") if right else ("fake" if truth[rel] else "real")
        low, high = det.features(batch)
        sc = protector.screen(low, high, [user])[0]
        rec = store.append(new_record(media_sha256=rel, model=NAME, revision=det.version,
                                      scores={NAME: score.fake_prob}, predicted_label="fake" if score.is_fake
                                      else "real", user_label=user, consent=True, protector_decision=sc.decision,
                                      protector_score=sc.fake_prob, reason=sc.reason), image=crop)
        made[kind].append({"file": rel, "user_label": user, "decision": rec.protector_decision})
    return {k: {"n": len(v), "accepted": sum(r["decision"] == "accepted" for r in v)} for k, v in made.items()}


if __name__ == "__main__":
    main()
