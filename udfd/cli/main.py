"""`udfd` command line: predict, evaluate, bench, feedback, retrain. JSON on stdout, logs and progress bars on stderr."""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from udfd.config import Settings
from udfd.errors import UdfdError
from udfd.perturb import DEFAULT_SUITE, parse_perturbations

log = logging.getLogger("udfd")


def main(argv: list[str] | None = None) -> int:
    # Before torch loads OpenMP: threads that sleep instead of spinning when idle. On a 2-core host shared with
    # other work, spinning OpenMP threads made a 7 ms model call take 230-590 ms (README, "Speed").
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING - 10 * args.verbose, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    settings = Settings.from_env()
    if getattr(args, "loads_models", True):  # `udfd provenance` loads no model, so it need not import torch
        from udfd.fast import set_threads  # imports torch: not needed for --help

        log.debug("torch threads: %d", set_threads(settings.threads))
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
    pr.add_argument("--report", type=Path, metavar="DIR",
                    help="write a self-contained HTML evidence report per file into DIR (DIR/<file name>.html)")
    _add_batch_args(pr)
    pr.set_defaults(func=cmd_predict)

    ev = sub.add_parser("evaluate", help="metrics on DIR/real/** and DIR/fake/**, overall and per source")
    ev.add_argument("data", type=Path)
    ev.add_argument("--detector", action="append",
                    help="short name or ref (repeatable): every one is scored; the first is the primary (overall)")
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--limit", type=int, default=0, help="at most N images per class (seeded sample)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--groups", type=Path, help="annotations CSV (udfd fairness annotate): metrics per group")
    ev.add_argument("--card", type=Path, help="with --groups: write the fairness section + figure into this "
                    "model folder's README.md")
    ev.add_argument("--kind", choices=("auto", "image", "video"), default="auto",
                    help="image or video folder (auto: video when it holds videos and no images)")
    ev.add_argument("--perturb", nargs="?", const=DEFAULT_SUITE, default="",
                    help=f"re-score every image after each perturbation (default suite: {DEFAULT_SUITE});"
                    " every --detector is measured")
    ev.add_argument("--split-file", type=Path, help="only the images of one split of this split.json (a checkpoint's)")
    ev.add_argument("--split", default="test", help="which split of --split-file (default: test)")
    ev.add_argument("--loso-fold", help="only the images one leave-one-source-out fold holds out"
                    " (udfd/evaluation/loso.py: dfdc, lfw_faceswap, generated_photos, sdfd_sd21, stylegan)")
    ev.add_argument("--source", action="append", help="only the images of this source folder (real/NAME or "
                    "fake/NAME; repeat for several)")
    ev.add_argument("--reliability", type=Path, help="write a reliability diagram PNG here")
    ev.add_argument("--out", type=Path, help="also write the JSON report to this file")
    ev.add_argument("--write-cards", action="store_true",
                    help="put the robustness table into each local detector's model card (README.md)")
    _add_batch_args(ev)
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
    be.add_argument("--fast", action="store_true",
                    help="fast inference paths (int8, bf16, compile, channels_last, onnx, onnx_int8) vs eager fp32 per "
                    "detector"
                    " (bench_fast.json)")
    be.add_argument("--modes", default="", help="with --fast: only these modes (comma-separated)")
    be.add_argument("--readme", type=Path, help="with --fast: also rewrite the table in this README (between "
                    "<!-- bench-fast --> markers)")
    be.add_argument("--side-by-side", action="store_true",
                    help="the default detector: our default path vs eager fp32 vs a plain timm + torchvision script, "
                    "interleaved on the same files (bench_side_by_side.json)")
    be.add_argument("--vit-b16", action="store_true",
                    help="with --side-by-side: a ViT-B/16-sized model (random weights, built offline) instead: our "
                    "default path, eager fp32 and transformers.pipeline (bench_side_by_side_vit_b16.json)")
    be.set_defaults(func=cmd_bench, detector=None)

    from udfd.cli.fairness import add_commands as add_fairness
    from udfd.cli.feedback import add_commands  # feedback stats|export, retrain
    from udfd.cli.provenance import add_commands as add_provenance
    from udfd.cli.publish import add_commands as add_publish
    from udfd.cli.scan import add_commands as add_scan

    add_commands(sub)
    add_fairness(sub)
    add_provenance(sub)
    add_publish(sub)
    add_scan(sub)
    return p


def _add_batch_args(p: argparse.ArgumentParser) -> None:
    from udfd.config import DEFAULT_BATCH_SIZE, DEFAULT_WORKERS

    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS,
                   help=f"threads that decode images and find faces (default {DEFAULT_WORKERS})")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
                   help=f"faces per detector call, across files (default {DEFAULT_BATCH_SIZE}; 1: one at a time)")


def cmd_predict(args: argparse.Namespace, settings: Settings) -> int:
    from udfd.media import iter_image_files
    from udfd.pipeline import load_detectors
    from udfd.video import is_video, iter_video_files

    files = sorted(set(iter_image_files(args.paths)) | set(iter_video_files(args.paths)))
    if not files:
        raise UdfdError(f"no image or video files found in {', '.join(map(str, args.paths))}")
    if args.detector:
        settings = replace(settings, video_detectors=tuple(args.detector))
    detectors = load_detectors(settings) if any(not is_video(f) for f in files) else []
    video_detectors = load_detectors(settings, settings.video_detectors) if any(map(is_video, files)) else []
    failed = 0
    for path, verdict, saved, error in _predictions(args, files, settings, detectors, video_detectors):
        if error is not None:
            failed += 1
            log.error("%s", error)
            if args.json:
                print(json.dumps({"file": str(path), "error": str(error)}), flush=True)
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


def _predictions(args: argparse.Namespace, files: list[Path], settings: Settings, detectors: list[Any],
                 video_detectors: list[Any]) -> Iterator[tuple[Path, Any, list[str] | None, UdfdError | None]]:
    """(path, verdict, saved explanations, error) per file, in order: runs of images through the batch engine
    (`udfd.batch.analyze_many`), videos one at a time."""
    from itertools import groupby

    from udfd.batch import analyze_many
    from udfd.pipeline import analyze_video, prepare_image
    from udfd.ui.report import save_report  # no Gradio: the report is plain HTML
    from udfd.video import is_video

    reports: set[str] = set()  # --report names already written by this run
    for video, run in groupby(files, key=is_video):
        if video:
            for path in run:
                try:
                    verdict = analyze_video(path, settings=settings, detectors=video_detectors)
                    if args.report:
                        save_report(args.report, path, verdict, video_detectors, taken=reports)
                    yield path, verdict, None, None
                except UdfdError as e:
                    yield path, None, None, e
            continue
        for r in analyze_many(run, lambda p: [prepare_image(p, settings=settings)], detectors=detectors,
                              settings=settings, workers=args.workers, batch_size=args.batch_size):
            if r.error is not None:
                yield r.item, None, None, r.error
                continue
            try:
                saved = _save_explanations(args, r.prepared[0].image, r.verdicts[0], detectors) if args.explain \
                    else None
                if args.report:
                    save_report(args.report, r.item, r.verdicts[0], detectors, image=r.prepared[0].image,
                                method=args.explain_method, taken=reports)
            except UdfdError as e:
                yield r.item, None, None, e
                continue
            yield r.item, r.verdicts[0], saved, None


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
    from udfd.evaluation.evaluate import evaluate_folder, evaluate_videos, labelled_videos, split_files

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
        only = split_files(args.split_file, args.split) if args.split_file else None
        subset = f"{args.split_file}:{args.split}" if args.split_file else "all"
        if args.loso_fold:
            only, subset = _loso_files(args.data, args.loso_fold, only), f"loso:{args.loso_fold}"
        if args.source:
            only = _source_files(args.data, args.source, only)
            subset += f" sources:{','.join(sorted(set(args.source)))}"
        try:
            perturbations = parse_perturbations(args.perturb)
        except ValueError as e:
            raise UdfdError(str(e)) from e
        annotations = None
        if args.groups:
            from udfd.evaluation.fairness import read_annotations

            annotations = read_annotations(args.groups)
        report = evaluate_folder(args.data, settings=settings, limit=args.limit, seed=args.seed,
                                 perturbations=perturbations, only=only, subset=subset, annotations=annotations,
                                 workers=args.workers, batch_size=args.batch_size)
        report["command"] = "udfd " + shlex.join(args.argv)
        _write_extras(args, report, settings)
        if args.card and "per_group" in report:
            from udfd.cli.fairness import write_fairness_card

            write_fairness_card(args.card, report)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(_format_report(report))
    return 0


def _loso_files(root: Path, fold_name: str, only: list[str] | None) -> list[str]:
    """Relative paths of the images a LOSO fold holds out (within `only` when a split file is given too)."""
    from udfd.evaluation.evaluate import labelled_files
    from udfd.evaluation.loso import get_fold

    try:
        fold = get_fold(fold_name)
    except KeyError as e:
        raise UdfdError(str(e)) from e
    keep = [f.relative_to(root).as_posix() for f, label, source in labelled_files(root, only=only)
            if fold.holds(label, source)]
    if not keep:
        raise UdfdError(f"no image of LOSO fold {fold.name!r} under {root}")
    return keep


def _source_files(root: Path, names: list[str], only: list[str] | None) -> list[str]:
    """Relative paths of the images of these source folders (within `only` when it is given). A name with no
    image under `root` is an error naming it."""
    from udfd.evaluation.evaluate import labelled_files

    files = [(f.relative_to(root).as_posix(), source) for f, _, source in labelled_files(root, only=only)]
    missing = sorted(set(names) - {source for _, source in files})
    if missing:
        raise UdfdError(f"no image of source(s) {', '.join(missing)} under {root}"
                        + (" in the chosen split" if only is not None else ""))
    return [rel for rel, source in files if source in names]


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    if args.vit_b16 and not args.side_by_side:
        raise UdfdError("--vit-b16 goes with --side-by-side (udfd bench --side-by-side --vit-b16)")
    if args.fast:
        from udfd.bench.fast import run_fast_bench
        from udfd.fast import FAST_MODES

        modes = tuple(m.strip() for m in args.modes.split(",") if m.strip()) or FAST_MODES
        if unknown := set(modes) - set(FAST_MODES):
            raise UdfdError(f"unknown --modes {sorted(unknown)}; choose from {', '.join(FAST_MODES)}")
        result = run_fast_bench(settings=settings, data=args.data, n=args.n, modes=modes)
        result["command"] = "udfd " + shlex.join(args.argv)
        if args.readme:
            from udfd.bench.fast import fast_markdown
            from udfd.cards import replace_marked_block

            text = args.readme.read_text(encoding="utf-8")
            args.readme.write_text(replace_marked_block(text, "bench-fast", fast_markdown(result),
                                                        heading="### Faster inference paths"), encoding="utf-8")
    elif args.side_by_side and args.vit_b16:
        from udfd.bench.vit_side_by_side import run_vit_side_by_side, vit_side_by_side_markdown

        result = run_vit_side_by_side(settings=settings, data=args.data, n=args.n)
        result["command"] = "udfd " + shlex.join(args.argv)
        result["table"] = vit_side_by_side_markdown(result)
    elif args.side_by_side:
        from udfd.bench.side_by_side import run_side_by_side, side_by_side_markdown

        result = run_side_by_side(settings=settings, data=args.data, n=args.n)
        result["command"] = "udfd " + shlex.join(args.argv)
        result["table"] = side_by_side_markdown(result)
    elif args.video:
        from udfd.bench.video import run_video_bench

        result = run_video_bench(settings=settings, clip=args.video_file, seconds=args.seconds, repeats=args.repeats)
        result["command"] = "udfd " + shlex.join(args.argv)
    else:
        from udfd.bench.latency import run_bench

        result = run_bench(settings=settings, data=args.data, n=args.n, include_vit_base=not args.no_vit_base,
                           include_families=not args.no_families)
    default = ("bench_fast.json" if args.fast else "bench_side_by_side_vit_b16.json" if args.side_by_side
               and args.vit_b16 else "bench_side_by_side.json" if args.side_by_side
               else "bench_video.json" if args.video else "bench_image.json")
    out = args.out or Path("benchmarks/results") / default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(result.get("table", json.dumps(result, indent=1)))
    return 0


def _write_extras(args: argparse.Namespace, report: dict[str, Any], settings: Settings) -> None:
    """--reliability PNG, --out JSON, --write-cards: the files an evaluation may leave behind."""
    if args.reliability:
        from udfd.evaluation.reliability import save_reliability_diagram

        curves = {n: d["calibration"] for n, d in report.get("detectors", {}).items()} or {
            report["detector"]: report["calibration"]}
        log.info("reliability diagram: %s", save_reliability_diagram(curves, args.reliability))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.write_cards:
        if "robustness" not in report:
            raise UdfdError("--write-cards needs --perturb (the card gets the robustness table)")
        from udfd.cards import replace_robustness_section, robustness_markdown
        from udfd.hub import CARD_NAME, parse_ref

        for name, entry in report["robustness"].items():
            ref = parse_ref(entry["ref"], short_names=settings.models)
            if ref.kind != "local-dir":
                log.warning("not writing a card for %s: %s is not a local folder", name, ref)
                continue
            card = Path(ref.location) / CARD_NAME
            text = card.read_text(encoding="utf-8") if card.is_file() else ""
            card.write_text(replace_robustness_section(text, robustness_markdown(entry, how=report["command"])),
                            encoding="utf-8")
            log.info("robustness table written to %s", card)


def _format_robustness(report: dict[str, Any]) -> list[str]:
    lines = []
    for name, entry in report.get("robustness", {}).items():
        lines += ["", f"robustness of {name} (threshold {entry['threshold']:.3f}; Δ = perturbed − clean)",
                  f"{'perturbation':<14}{'auc':>7}{'Δauc':>8}{'acc':>7}{'Δacc':>8}{'|Δp|':>7}{'flips':>7}{'r→f':>7}"]
        for pert, r in entry["perturbed"].items():
            auc = f"{r['roc_auc']:.3f}" if r["roc_auc"] is not None else "–"
            dauc = f"{r['delta_roc_auc']:+.3f}" if r["delta_roc_auc"] is not None else "–"
            rf = f"{r['real_newly_fake_share']:.1%}" if r["real_newly_fake_share"] is not None else "–"
            lines.append(f"{pert:<14}{auc:>7}{dauc:>8}{r['accuracy']:>7.3f}{r['delta_accuracy']:>+8.3f}"
                         f"{r['mean_abs_delta_fake_prob']:>7.3f}{r['flip_share']:>7.1%}{rf:>7}")
    return lines


def _format_report(report: dict[str, Any]) -> str:
    rows = [("all", report["overall"])] + list(report["per_source"].items())
    lines = [f"detector {report['detector']} ({report['version']}) on {report['data']}, threshold "
             f"{report['overall']['threshold']:.3f}",
             f"{'source':<24}{'n_real':>7}{'n_fake':>7}{'acc':>7}{'f1':>7}{'auc':>7}"]
    for name, m in rows:
        auc = f"{m['roc_auc']:.3f}" if m["roc_auc"] is not None else "–"
        lines.append(f"{name:<24}{m['n_real']:>7}{m['n_fake']:>7}{m['accuracy']:>7.3f}{m['f1']:>7.3f}{auc:>7}")
    if "calibration" in report:
        lines.append(f"ECE (15 bins) {report['calibration']['ece']:.4f}")
    for name, d in report.get("detectors", {}).items():
        m = d["overall"]
        auc = f"{m['roc_auc']:.3f}" if m["roc_auc"] is not None else "–"
        lines.append(f"{name:<24} acc {m['accuracy']:.3f} auc {auc} ECE {d['calibration']['ece']:.4f}")
    lines += _format_robustness(report)
    if report["errors"]:
        lines.append(f"{len(report['errors'])} files failed: see --json")
    return "\n".join(lines)
