"""Train the lip-region CNN-LSTM (`lip_lstm`) on a folder of videos: DIR/{real,fake}/<source>/*.mp4.

    accelerate launch training/train_video.py --data ../shared/data/videos --output models/udfd-lip-lstm \
        --config training/configs/lip_lstm.yaml

Preprocessing runs once per video and is cached (`--cache-dir`): optical-flow frame selection of
`--frames-per-video` frames, faces tracked across them, FaceMesh lip crops of the longest face track
(udfd.pipeline, the same code the app runs). Training draws `--windows-per-video` random, time-ordered
subsequences of `seq_len` frames per video and epoch, with random horizontal flips and brightness changes;
binary cross-entropy (optionally class-weighted), L2 on the layers the report regularises, bf16 autocast where
the device supports it, early stopping with the best weights restored.

Evaluation is leave-one-group-out cross-validation (a group = a source video and every manipulation of it,
e.g. FaceForensics++ `519.mp4` and `519_515.mp4`), because a dev set of a dozen clips cannot spare a held-out
split. The shipped model is then trained on every video for the median best epoch of the folds.
`--test-source S` instead trains on every other source and tests on S (cross-dataset). Data from the Hub:
`--hub-dataset org/name` downloads a dataset repo laid out the same way (needs network).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.options import training_record  # noqa: E402
from udfd.cards import render_card, write_card  # noqa: E402
from udfd.config import Settings, VideoSettings  # noqa: E402
from udfd.detectors.lip_lstm import LipLSTMDetector, resample_sequence  # noqa: E402
from udfd.evaluation.metrics import best_youden_threshold, binary_metrics, metrics_by_group  # noqa: E402
from udfd.hub import push_folder  # noqa: E402
from udfd.video import VIDEO_EXTENSIONS  # noqa: E402

log = logging.getLogger("train_video")
DEFAULTS: dict[str, Any] = {
    "epochs": 30, "batch_size": 4, "lr": 3e-4, "l2": 1e-3, "patience": 5, "seed": 42, "seq_len": 60,
    "frames_per_video": 120, "windows_per_video": 4, "flow_threshold": 1.0, "roi_size": 64, "class_weights": True,
    "mixed_precision": "bf16", "arch": {}, "version": "", "cache_dir": ".cache/udfd", "max_minutes": 0.0,
    "report_to": "none", "logging_dir": "runs",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="YAML overrides (keys as the long options, snake_case)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path, help="DIR/{real,fake}/<source>/<video>")
    src.add_argument("--hub-dataset", help="Hub dataset repo with the same layout (needs network)")
    p.add_argument("--output", type=Path, required=True)
    for name, typ in (("epochs", int), ("batch-size", int), ("lr", float), ("l2", float), ("patience", int),
                      ("seed", int), ("seq-len", int), ("frames-per-video", int), ("windows-per-video", int),
                      ("flow-threshold", float), ("roi-size", int), ("max-minutes", float)):
        p.add_argument(f"--{name}", type=typ)
    p.add_argument("--class-weights", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--mixed-precision", help="bf16 | no (bf16 autocast on CPU where supported)")
    p.add_argument("--arch", type=json.loads, help='JSON architecture overrides, e.g. \'{"hidden": 64}\'')
    p.add_argument("--test-source", help="train on every other source, test on this one (cross-dataset)")
    p.add_argument("--no-cv", action="store_true", help="skip cross-validation; train on all for --epochs")
    p.add_argument("--version")
    p.add_argument("--cache-dir")
    p.add_argument("--report-to")
    p.add_argument("--logging-dir")
    p.add_argument("--push-to-hub", action="store_true")
    p.add_argument("--hub-model-id")
    args = p.parse_args(argv)
    import yaml

    from_yaml = yaml.safe_load(args.config.read_text(encoding="utf-8")) or {} if args.config else {}
    for key, value in {**DEFAULTS, **from_yaml}.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.push_to_hub and not args.hub_model_id:
        p.error("--push-to-hub needs --hub-model-id org/name")
    return args


# -- data ---------------------------------------------------------------------------------------------------
def list_videos(root: Path) -> list[dict[str, Any]]:
    """{path, label, source, group} for every video under root/real and root/fake."""
    out = []
    for label, name in ((0, "real"), (1, "fake")):
        for path in sorted((root / name).rglob("*")):
            if path.suffix.lower() in VIDEO_EXTENSIONS and path.is_file():
                rel = path.relative_to(root / name).parts
                source = rel[0] if len(rel) > 1 else "."
                out.append({"path": path, "label": label, "source": source, "group": video_group(path.stem, source)})
    if not out:
        raise SystemExit(f"no videos under {root}/real or {root}/fake")
    return out


def video_group(stem: str, source: str) -> str:
    """FaceForensics++ names a manipulation `<target>_<source>`: it shares the scene of the real `<target>`."""
    head = stem.split("_")[0]
    return f"ffpp:{head}" if source.startswith("ffpp") and head.isdigit() else f"{source}:{stem}"


def lip_track(path: Path, settings: Settings, cache: Path) -> dict[str, np.ndarray]:
    """Lip crops (T, S, S, 3) of the longest face track over the flow-selected frames, cached by content."""
    from udfd.faces import get_face_detector
    from udfd.pipeline import faces_region, lip_sequences, track_video_faces
    from udfd.video import sample_video

    v = settings.video
    key = hashlib.sha256(f"{path.stat().st_size}:{path.stat().st_mtime_ns}:{path.name}:{v}".encode()).hexdigest()
    file = cache / "video" / f"{path.stem}-{key[:16]}.npz"
    if file.exists():
        with np.load(file, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    fd = get_face_detector(settings.faces)
    sample = sample_video(path, v, roi_finder=lambda f: faces_region(f, settings, fd))
    frame_faces, tracks, found = track_video_faces(sample.frames, settings, face_detector=fd)
    lips, mesh = lip_sequences(frame_faces, tracks[:1], found[:1], v.lip_size)
    if lips[0] is None:
        raise SystemExit(f"{path}: no face found in any selected frame; remove it from the training folder")
    positions = [t for t, _ in tracks[0]]
    out = {"lips": lips[0], "frames": np.asarray([sample.indices[t] for t in positions]),
           "motion": sample.magnitudes[[sample.indices[t] for t in positions]], "mesh_found": np.asarray(mesh),
           "fell_back": np.asarray(sample.selection != "optical_flow")}
    file.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(file, **out)
    return out


def eval_sequence(lips: np.ndarray, motion: np.ndarray, k: int) -> np.ndarray:
    """What the app feeds the model: the k highest-motion cached frames, in temporal order."""
    if len(lips) <= k:
        return lips
    top = sorted(np.argsort(-motion, kind="stable")[:k])
    return lips[top]


def train_windows(seqs: list[np.ndarray], labels: list[int], *, seq_len: int, per_video: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random time-ordered subsequences, flipped and brightened at random: (N, seq_len, S, S, 3) uint8, (N,)."""
    xs, ys = [], []
    for seq, label in zip(seqs, labels, strict=True):
        for _ in range(per_video):
            idx = np.sort(rng.choice(len(seq), seq_len, replace=False)) if len(seq) > seq_len else None
            window = seq[idx] if idx is not None else resample_sequence(seq, seq_len)
            if rng.random() < 0.5:
                window = window[:, :, ::-1]
            window = np.clip(window.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)
            xs.append(window)
            ys.append(label)
    return np.stack(xs), np.asarray(ys)


# -- training -----------------------------------------------------------------------------------------------
def fit(args: argparse.Namespace, train: list[int], val: list[int] | None, seqs: list[np.ndarray],
        evals: list[np.ndarray], labels: np.ndarray, *, epochs: int) -> tuple[LipLSTMDetector, int, list[dict]]:
    """Train one model; with `val`, early-stop on its loss and restore the best weights."""
    from accelerate import Accelerator

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    arch = {"image_size": args.roi_size, "seq_len": args.seq_len, **args.arch}
    det = LipLSTMDetector.create(arch)
    accelerator = Accelerator(mixed_precision=args.mixed_precision if args.mixed_precision != "no" else "no",
                              cpu=not torch.cuda.is_available())
    opt = torch.optim.Adam(det.net.parameters(), lr=args.lr)
    net, opt = accelerator.prepare(det.net, opt)
    y_train = labels[train]
    weight = None
    if args.class_weights and 0 < y_train.sum() < len(y_train):
        weight = torch.tensor([len(y_train) / (2 * (y_train == 0).sum()), len(y_train) / (2 * y_train.sum())],
                              dtype=torch.float32)
    history, best, best_epoch, stale, start = [], float("inf"), 0, 0, time.time()
    best_state = copy.deepcopy(det.net.state_dict())
    for epoch in range(epochs):
        net.train()
        x, y = train_windows([seqs[i] for i in train], list(y_train), seq_len=args.seq_len,
                             per_video=args.windows_per_video, rng=rng)
        order = rng.permutation(len(y))
        total = 0.0
        for s in range(0, len(order), args.batch_size):
            b = order[s:s + args.batch_size]
            batch = det.preprocess(list(x[b]))
            with accelerator.autocast():
                logits = net(batch)
            target = torch.from_numpy(y[b]).long()
            loss = torch.nn.functional.cross_entropy(logits.float(), target, weight=weight)
            loss = loss + args.l2 * sum((w.float() ** 2).sum() for w in det.net.l2_parameters())
            accelerator.backward(loss)
            opt.step()
            opt.zero_grad()
            total += loss.item() * len(b)
        row = {"epoch": epoch, "train_loss": total / len(order)}
        if val:
            probs = predict(det, [evals[i] for i in val])
            row["val_loss"] = float(binary_metrics(labels[val], probs)["log_loss"])
            if row["val_loss"] < best:
                best, best_epoch, stale = row["val_loss"], epoch, 0
                best_state = copy.deepcopy(det.net.state_dict())
            else:
                stale += 1
        history.append(row)
        log.info("epoch %d %s", epoch, {k: round(v, 4) for k, v in row.items() if k != "epoch"})
        if (val and stale >= args.patience) or (args.max_minutes and time.time() - start > args.max_minutes * 60):
            break
    if val:
        det.net.load_state_dict(best_state)
    else:
        best_epoch = len(history) - 1
    det.net.eval()
    return det, best_epoch, history


def predict(det: LipLSTMDetector, seqs: list[np.ndarray]) -> np.ndarray:
    det.net.eval()
    with torch.inference_mode():
        return np.asarray([s.fake_prob for s in det.predict(det.preprocess(seqs))]) if seqs else np.zeros(0)


def cross_validate(args: argparse.Namespace, videos: list[dict], seqs: list[np.ndarray], evals: list[np.ndarray],
                   labels: np.ndarray) -> tuple[np.ndarray, list[int], list[dict]]:
    """Leave-one-group-out: out-of-fold fake_prob for every video, best epochs, per-fold histories.

    Inside each fold, the group after the held-out one (cyclically) is the early-stopping validation set.
    """
    from tqdm.auto import tqdm

    groups = sorted({v["group"] for v in videos})
    oof = np.full(len(videos), np.nan)
    epochs, folds = [], []
    for g_i, held in enumerate(tqdm(groups, desc="cross-validation folds")):
        val_group = groups[(g_i + 1) % len(groups)]
        test = [i for i, v in enumerate(videos) if v["group"] == held]
        val = [i for i, v in enumerate(videos) if v["group"] == val_group]
        train = [i for i in range(len(videos)) if i not in test and i not in val]
        det, best_epoch, hist = fit(args, train, val, seqs, evals, labels, epochs=args.epochs)
        oof[test] = predict(det, [evals[i] for i in test])
        epochs.append(best_epoch)
        folds.append({"held_out": held, "val": val_group, "best_epoch": best_epoch, "history": hist})
    return oof, epochs, folds


def main(argv: list[str] | None = None, *, hf_api: Any = None) -> Path:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.manual_seed(args.seed)
    root = _data_root(args)
    settings = replace(Settings(), video=replace(VideoSettings(), frames=args.frames_per_video,
                                                  flow_threshold=args.flow_threshold, lip_size=args.roi_size))
    videos = list_videos(root)
    from tqdm.auto import tqdm

    cache = Path(args.cache_dir)
    tracks = [lip_track(v["path"], settings, cache) for v in tqdm(videos, desc="preprocessing videos")]
    seqs = [t["lips"] for t in tracks]
    evals = [eval_sequence(t["lips"], t["motion"], args.seq_len) for t in tracks]
    labels = np.asarray([v["label"] for v in videos])

    results: dict[str, dict[str, Any]] = {}
    folds: list[dict] = []
    epochs = args.epochs
    if args.test_source:
        test = [i for i, v in enumerate(videos) if v["source"] == args.test_source]
        train = [i for i in range(len(videos)) if i not in test]
        if not test:
            raise SystemExit(f"no videos of source {args.test_source!r}")
        det, _, hist = fit(args, train, None, seqs, evals, labels, epochs=epochs)
        results[f"test ({args.test_source})"] = binary_metrics(labels[test], predict(det, [evals[i] for i in test]))
        folds.append({"history": hist})
        threshold = 0.5
    else:
        threshold = 0.5
        if not args.no_cv and len({v["group"] for v in videos}) >= 3:
            oof, best_epochs, folds = cross_validate(args, videos, seqs, evals, labels)
            threshold = best_youden_threshold(labels, oof)
            results["cross-validation (out of fold)"] = binary_metrics(labels, oof, threshold=threshold)
            results["cross-validation at 0.5"] = binary_metrics(labels, oof, threshold=0.5)
            for src, m in metrics_by_group(labels, oof, [v["source"] for v in videos], threshold=threshold).items():
                results[f"cv/{src}"] = m
            epochs = int(np.median(best_epochs)) + 1
        det, _, hist = fit(args, list(range(len(videos))), None, seqs, evals, labels, epochs=epochs)
        results["train (all videos, optimistic)"] = binary_metrics(labels, predict(det, evals), threshold=threshold)
    det.set_calibration(temperature=1.0, threshold=threshold)
    _finish(args, det, root, videos, tracks, results, folds, epochs, hf_api=hf_api)
    return args.output


def _data_root(args: argparse.Namespace) -> Path:
    if args.hub_dataset:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(args.hub_dataset, repo_type="dataset"))
        except Exception as e:  # offline / unknown repo: huggingface_hub raises several types
            raise SystemExit(f"cannot download Hub dataset {args.hub_dataset!r} ({type(e).__name__}: {e}); it "
                             "needs network access — offline, pass a folder with --data") from e
    return args.data.resolve()


def _finish(args: argparse.Namespace, det: LipLSTMDetector, root: Path, videos: list[dict], tracks: list[dict],
            results: dict[str, dict[str, Any]], folds: list[dict], epochs: int, *, hf_api: Any) -> None:
    out = args.output
    out.mkdir(parents=True, exist_ok=True)
    version, train_cfg = training_record(args, root)
    det.save_pretrained(out, metadata={"version": version, "training": train_cfg, "epochs_trained": epochs})
    (out / "eval_results.json").write_text(json.dumps({"results": results, "folds": folds}, indent=1), "utf-8")
    rows = [{"video": v["path"].name, "label": v["label"], "source": v["source"], "group": v["group"],
             "frames": len(t["lips"]), "lips_by_mesh": int(t["mesh_found"]), "uniform_fallback": bool(t["fell_back"])}
            for v, t in zip(videos, tracks, strict=True)]
    n_params = sum(p.numel() for p in det.net.parameters())
    card = render_card(
        template="lip_lstm.md", model_name=out.name, dataset=train_cfg["data"], results=results,
        task_type="video-classification",
        context={"version": version, "n_params": f"{n_params / 1e6:.2f} M", "threshold": det.threshold,
                 "epochs": epochs, "videos": rows, "training_config": json.dumps(train_cfg, indent=1),
                 "seq_len": args.seq_len, "roi_size": args.roi_size, "theta": args.flow_threshold},
    )
    write_card(out, card)
    log.info("wrote %s: %s", out, {k: (m.get("accuracy"), m.get("roc_auc")) for k, m in results.items()})
    if args.push_to_hub:
        push_folder(out, repo_id=args.hub_model_id, api=hf_api, commit_message=f"UDFD lip_lstm {version}")


if __name__ == "__main__":
    main()
