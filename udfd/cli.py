"""`udfd` command line: predict, evaluate, bench, feedback, retrain. JSON on stdout, logs and progress bars on stderr."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from udfd.config import Settings
from udfd.errors import UdfdError

log = logging.getLogger("udfd")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING - 10 * args.verbose, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    if getattr(args, "detector", None):
        settings = replace(settings, detectors=tuple(args.detector))
    try:
        return args.func(args, settings)
    except UdfdError as e:
        log.error("%s", e)
        return 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="udfd", description="Deepfake detection for faces in images.")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")
    sub = p.add_subparsers(required=True, metavar="command")

    pr = sub.add_parser("predict", help="score images and videos (files or folders) and print verdicts")
    pr.add_argument("paths", nargs="+", type=Path)
    pr.add_argument("--json", action="store_true", help="one Verdict JSON object per line (JSON Lines)")
    pr.add_argument("--detector", action="append", help="short name or hf-hub:/local-dir: ref (repeatable)")
    pr.add_argument("--explain", action="store_true",
                    help="save a heat-map overlay per detector as a timestamped JPEG in --explain-dir")
    pr.add_argument("--explain-dir", type=Path, default=Path("explanations"), help="default: ./explanations")
    pr.add_argument("--explain-method", default=None,
                    help="fullgrad | gradcam | eigencam | error (default: each detector's own default)")
    pr.set_defaults(func=cmd_predict)

    ev = sub.add_parser("evaluate", help="metrics on DIR/real/** and DIR/fake/**, overall and per source")
    ev.add_argument("data", type=Path)
    ev.add_argument("--detector", action="append", help="short name or ref; the first one is evaluated")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--limit", type=int, default=0, help="at most N images per class (seeded sample)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--split", help="SPLIT_JSON:NAME, e.g. models/udfd-vit-tiny/split.json:test — only those files")
    ev.add_argument("--groups", type=Path, help="annotations CSV (udfd fairness annotate): metrics per group")
    ev.add_argument("--card", type=Path, help="with --groups: write the fairness section + figure into this "
                    "model folder's README.md")
    ev.add_argument("--kind", choices=("auto", "image", "video"), default="auto",
                    help="image or video folder (auto: video when it holds videos and no images)")
    ev.set_defaults(func=cmd_evaluate)

    be = sub.add_parser("bench", help="latency of decode + faces + detector vs a plain transformers pipeline")
    be.add_argument("--data", type=Path, default=None, help="folder of face images (default ../shared/data)")
    be.add_argument("--n", type=int, default=24, help="images per measurement")
    be.add_argument("--out", type=Path, help="default: benchmarks/results/bench_image.json (bench_video.json)")
    be.add_argument("--no-vit-base", action="store_true", help="skip the ViT-B/16-sized model")
    be.add_argument("--no-families", action="store_true", help="skip the per-detector rows")
    be.add_argument("--video", action="store_true", help="benchmark video analysis instead (bench_video.json)")
    be.add_argument("--video-file", type=Path, help="clip for --video (default: a 720p dev clip)")
    be.add_argument("--seconds", type=float, default=10.0, help="analyse the first N seconds (--video)")
    be.add_argument("--repeats", type=int, default=3, help="runs per path, the best is kept (--video)")
    be.set_defaults(func=cmd_bench, detector=None)

    from udfd.fairness_cli import add_commands as add_fairness
    from udfd.feedback_cli import add_commands  # feedback stats|export, retrain

    add_commands(sub)
    add_fairness(sub)
    return p


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    from udfd.media import iter_image_files, read_image
    from udfd.pipeline import analyze_image, analyze_video, load_detectors
    from udfd.video import is_video, iter_video_files

    files = sorted(set(iter_image_files(args.paths)) | set(iter_video_files(args.paths)))
    if not files:
        raise UdfdError(f"no image or video files found in {', '.join(map(str, args.paths))}")
    if args.detector:
        settings = replace(settings, video_detectors=tuple(args.detector))
    detectors = load_detectors(settings) if any(not is_video(f) for f in files) else []
    video_detectors = load_detectors(settings, settings.video_detectors) if any(map(is_video, files)) else []
    failed = 0
    for path in files:
        try:
            saved = None
            if is_video(path):
                verdict = analyze_video(path, settings=settings, detectors=video_detectors)
            else:
                image = read_image(path, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes)
                verdict = analyze_image(image, settings=settings, detectors=detectors)
                saved = _save_explanations(args, image, verdict, detectors) if args.explain else None
        except UdfdError as e:
            failed += 1
            log.error("%s", e)
            if args.json:
                print(json.dumps({"file": str(path), "error": str(e)}), flush=True)
            continue
        if args.json:
            extra = {"explanations": saved} if saved is not None else {}
            print(json.dumps(verdict.to_dict() | extra), flush=True)
        else:
            o = verdict.overall
            flag = " (uncertain)" if o.uncertain else ""
            print(f"{path}: {o.label}{flag} fake_prob={o.fake_prob:.3f} faces={len(verdict.faces)}", flush=True)
    if failed:
        log.error("%d of %d files could not be analysed", failed, len(files))
    return 1 if failed else 0


def _save_explanations(args: argparse.Namespace, image: Any, verdict: Any, detectors: list[Any]) -> list[str]:
    """One overlay JPEG per detector: DIR/<stem>.<detector>-<method>.<UTC timestamp>.jpg. Returns the paths."""
    from datetime import UTC, datetime

    from PIL import Image as PILImage

    from udfd.explain import explain_methods, explain_verdict, overlay

    args.explain_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    saved = []
    for det in detectors:
        if not explain_methods(det):
            log.warning("%s declares no explanation method: no heat-map saved", det.name)
            continue
        heatmaps = explain_verdict(image.pixels, verdict, det, method=args.explain_method)
        out = args.explain_dir / f"{Path(image.source).stem}.{det.name}-{heatmaps[0].method}.{stamp}.jpg"
        PILImage.fromarray(overlay(image.pixels, heatmaps)).save(out, quality=92)
        log.info("explanation saved to %s", out)
        saved.append(str(out))
    return saved


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from udfd.evaluate import evaluate_folder, evaluate_videos, labelled_videos

    kind = args.kind
    if kind == "auto":
        from udfd.media import iter_image_files

        has_images = any(iter_image_files([args.data / c]) for c in ("real", "fake") if (args.data / c).is_dir())
        kind = "video" if labelled_videos(args.data) and not has_images else "image"
    if kind == "video":
        if args.detector:
            settings = replace(settings, video_detectors=tuple(args.detector))
        report = evaluate_videos(args.data, settings=settings)
    else:
        annotations = None
        if args.groups:
            from udfd.fairness import read_annotations

            annotations = read_annotations(args.groups)
        only = None
        if args.split:
            from udfd.evaluate import split_files

            file, _, name = args.split.rpartition(":")
            only = split_files(Path(file), name) if file else split_files(Path(name), "test")
        report = evaluate_folder(args.data, settings=settings, limit=args.limit, seed=args.seed,
                                 annotations=annotations, only=only)
        if only is not None:
            report["split"] = args.split
        if args.card and "per_group" in report:
            from udfd.fairness_cli import write_fairness_card

            write_fairness_card(args.card, report)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(_format_report(report))
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.video:
        from udfd.bench_video import run_video_bench

        result = run_video_bench(settings=settings, clip=args.video_file, seconds=args.seconds, repeats=args.repeats)
    else:
        from udfd.bench import run_bench

        result = run_bench(settings=settings, data=args.data, n=args.n, include_vit_base=not args.no_vit_base,
                           include_families=not args.no_families)
    out = args.out or Path("benchmarks/results") / ("bench_video.json" if args.video else "bench_image.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(result.get("table", json.dumps(result, indent=1)))
    return 0


def _format_report(report: dict[str, Any]) -> str:
    rows = [("all", report["overall"])] + list(report["per_source"].items())
    lines = [f"detector {report['detector']} ({report['version']}) on {report['data']}, threshold "
             f"{report['overall']['threshold']:.3f}",
             f"{'source':<24}{'n_real':>7}{'n_fake':>7}{'acc':>7}{'f1':>7}{'auc':>7}"]
    for name, m in rows:
        auc = f"{m['roc_auc']:.3f}" if m["roc_auc"] is not None else "–"
        lines.append(f"{name:<24}{m['n_real']:>7}{m['n_fake']:>7}{m['accuracy']:>7.3f}{m['f1']:>7.3f}{auc:>7}")
    if report["errors"]:
        lines.append(f"{len(report['errors'])} files failed: see --json")
    return "\n".join(lines)
