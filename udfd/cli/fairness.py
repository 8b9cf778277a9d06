"""`udfd fairness annotate|report` and the per-group part of `udfd evaluate --groups` (tables, figures, card)."""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from udfd.config import Settings
from udfd.evaluation.fairness import Annotation, annotate, distribution, read_annotations, sha256_file

log = logging.getLogger(__name__)
ATTRIBUTES = ("gender", "ethnicity", "gender_x_ethnicity")
CARD_START, CARD_END = "<!-- fairness:start -->", "<!-- fairness:end -->"


def add_commands(sub: Any) -> None:
    fa = sub.add_parser("fairness", help="demographic annotations and their distribution")
    fa_sub = fa.add_subparsers(required=True, metavar="action")
    an = fa_sub.add_parser("annotate", help="gender and ethnicity per image -> CSV keyed by sha256")
    an.add_argument("data", type=Path, help="image folder (e.g. ../shared/data/faces)")
    an.add_argument("--method", choices=("manifest", "metadata", "deepface"), default="manifest",
                    help="manifest.csv group notes, your metadata file, or DeepFace (optional extra, needs network)")
    an.add_argument("--metadata", type=Path, help="CSV or JSON Lines with file|sha256, gender, ethnicity")
    an.add_argument("--out", type=Path, help="default: DATA/udfd_annotations.csv (next to the data)")
    an.set_defaults(func=cmd_annotate, detector=None)
    rp = fa_sub.add_parser("report", help="counts and shares by gender, ethnicity, both; per class; bar charts")
    rp.add_argument("data", type=Path)
    rp.add_argument("--annotations", type=Path, required=True)
    rp.add_argument("--out", type=Path, default=Path("benchmarks/results/fairness"), help="folder for JSON + PNGs")
    rp.set_defaults(func=cmd_report, detector=None)


def cmd_annotate(args: argparse.Namespace, settings: Settings) -> int:
    out = args.out or args.data / "udfd_annotations.csv"
    result = annotate(args.data, method=args.method, out=out, metadata=args.metadata)
    print(json.dumps({"annotations": str(out), "annotated": len(result)}))
    return 0


def labelled_annotations(root: Path, annotations: dict[str, Annotation]) -> list[tuple[Path, int, str, str]]:
    """(path, label, gender, ethnicity) for every image under root/{real,fake} ("unknown" when unannotated)."""
    from udfd.evaluation.evaluate import labelled_files

    out = []
    for path, label, _source in labelled_files(root):
        a = annotations.get(sha256_file(path))
        out.append((path, label, a.gender if a else "unknown", a.ethnicity if a else "unknown"))
    return out


def cmd_report(args: argparse.Namespace, settings: Settings) -> int:
    rows = labelled_annotations(args.data, read_annotations(args.annotations))
    dist = distribution([r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distribution.json").write_text(json.dumps(dist, indent=1), encoding="utf-8")
    for attr in ATTRIBUTES:
        bar_chart(dist[attr], args.out / f"distribution_{attr}.png", title=f"{attr.replace('_x_', ' × ')} by class")
    print(distribution_markdown(dist))
    return 0


def bar_chart(table: dict[str, dict[str, dict[str, float]]], path: Path, *, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = sorted({k for cls in ("real", "fake") for k in table[cls]})
    x = np.arange(len(keys))
    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(keys)), 3.5))
    for i, cls in enumerate(("real", "fake")):
        ax.bar(x + (i - 0.5) * 0.4, [table[cls].get(k, {}).get("n", 0) for k in keys], width=0.4, label=cls)
    ax.set_xticks(x, keys, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def distribution_markdown(dist: dict[str, Any]) -> str:
    lines = []
    for attr in ATTRIBUTES:
        lines += [f"\n**{attr.replace('_x_', ' × ')}**\n", "| group | real n | real share | fake n | fake share |",
                  "|---|---:|---:|---:|---:|"]
        table = dist[attr]
        for k in sorted({k for cls in ("real", "fake") for k in table[cls]}):
            r, f = table["real"].get(k, {"n": 0, "share": 0.0}), table["fake"].get(k, {"n": 0, "share": 0.0})
            lines.append(f"| {k} | {r['n']} | {r['share']:.3f} | {f['n']} | {f['share']:.3f} |")
    return "\n".join(lines)


def group_markdown(report: dict[str, Any]) -> str:
    lines = []
    for attr in ATTRIBUTES:
        r = report[attr]
        lines += [f"\n**By {attr.replace('_x_', ' × ')}**\n",
                  "| group | n real | n fake | accuracy | F1 | FPR | FNR | TP | TN | FP | FN |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, m in r["groups"].items():
            c = m["confusion"]
            lines.append(f"| {name} | {m['n_real']} | {m['n_fake']} | {_f(m['accuracy'])} | {m['f1']:.3f} | "
                         f"{_f(m['fpr'])} | {_f(m['fnr'])} | {c['tp']} | {c['tn']} | {c['fp']} | {c['fn']} |")
        gaps = ", ".join(f"{k} {v['gap']:.3f} ({v['highest']} vs {v['lowest']})" for k, v in r["largest_gaps"].items()
                         if v) or "not defined (fewer than two annotated groups with that rate)"
        lines.append(f"\nLargest gaps between annotated groups: {gaps}.")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def confusion_figure(report: dict[str, Any], path: Path, *, attr: str = "ethnicity") -> None:
    """One 2×2 confusion matrix per group (rows: true real/fake, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = report[attr]["groups"]
    fig, axes = plt.subplots(1, len(groups), figsize=(2.4 * len(groups), 2.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], groups.items(), strict=True):
        c = m["confusion"]
        mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(mat, cmap="Blues")
        for (i, j), v in np.ndenumerate(mat):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=9)
        ax.set_xticks([0, 1], ["real", "fake"], fontsize=7)
        ax.set_yticks([0, 1], ["real", "fake"], fontsize=7)
        ax.set_title(name, fontsize=8)
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("true", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def update_card(card: Path, section: str) -> None:
    """Replace (or append) the fairness section of a model card, between HTML comment markers."""
    text = card.read_text(encoding="utf-8")
    block = f"{CARD_START}\n{section.strip()}\n{CARD_END}"
    if CARD_START in text:
        text = re.sub(re.escape(CARD_START) + r".*?" + re.escape(CARD_END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    card.write_text(text, encoding="utf-8")


def write_fairness_card(folder: Path, report: dict[str, Any]) -> None:
    """Fairness section (per-group tables, gaps, confusion figure) into `folder`/README.md."""
    folder = Path(folder)
    card = folder / "README.md"
    if not card.is_file():
        raise FileNotFoundError(f"no model card at {card}")
    figure = folder / "fairness_confusion.png"
    confusion_figure(report["per_group"], figure)
    o = report["overall"]
    groups = report["per_group"]["ethnicity"]["groups"]
    reals = any(m["n_real"] for name, m in groups.items() if name != "unknown")
    fakes = any(m["n_fake"] for name, m in groups.items() if name != "unknown")
    measured = ("both the FPR (reals called fake) and the FNR (fakes missed)" if reals and fakes else
                "only the FNR (fakes missed): no annotated real images" if fakes else
                "only the FPR (reals called fake): no annotated fake images")
    where = f" ({report['subset']})" if report.get("subset", "all") != "all" else ""
    sizes = [m["n"] for name, m in groups.items() if name != "unknown" and m["n"]]
    noise = (f" Groups are small (n = {min(sizes)}–{max(sizes)}): one image moves a group's rate by up to "
             f"{1 / min(sizes):.3f}, so gaps of that size are noise, not evidence.") if sizes else ""
    section = (
        "## Fairness\n\n"
        f"Per-group metrics of `{report['detector']}` ({report['version']}) at threshold {o['threshold']:.4f} on "
        f"`{Path(report['data']).name}`{where}: {o['n']} images, {report['per_group']['annotated']} with a gender "
        "and ethnicity annotation (the rest are `unknown`). Per group this measures " + measured + "; the gaps "
        "are equalised-odds style differences between annotated groups. Reproduce with `udfd evaluate DIR "
        "--split-file SPLIT_JSON --groups ANNOTATIONS.csv --card FOLDER`." + noise + "\n"
        + group_markdown(report["per_group"])
        + f"\n\n![confusion matrices by ethnicity]({figure.name})\n"
    )
    update_card(card, section)
