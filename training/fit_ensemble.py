"""Fit the `ensemble` detector from members' score files and judge it by leave-one-source-out.

    python training/fit_ensemble.py --member lite0_ft=effnet_lite0 --member sbi_lite0=sbi_lite0 \
        --member mesonet=mesonet4_df --scores runs/scores --output models/udfd-ensemble

Score files (written by the members' training scripts, see udfd/evaluation/loso.py): runs/scores/<member>/<fold>.csv
with columns path, label (1 = fake), source, split, fake_prob. Fold `loso_<name>` holds the held-out fold's rows
(split `heldout`) and validation rows (split `val`) scored by a model trained without that fold; `in_dist` holds
the in-distribution val / test rows of the final model. A member with a single `all.csv` (or any one file without
folds, e.g. MesoNet, trained by its authors on none of our sources) gives the same scores in every fold.

Every combination rule of udfd.evaluation.stacking is scored per fold; the one with the best mean LOSO AUC is
written (weights as JSON in config.json: no pickle), with temperature and threshold fitted on in-distribution val.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from udfd.evaluation.loso import FOLDS, Fold, ScoreRow, write_scores  # noqa: E402
from udfd.evaluation.metrics import best_youden_threshold, binary_metrics, fit_temperature  # noqa: E402
from udfd.evaluation.stacking import (  # noqa: E402
    FoldData,
    auc,
    fit_lse,
    fit_stack,
    heldout_scores,
    log_odds,
    loso_pooled,
    loso_table,
    mean_of,
)

log = logging.getLogger("training.fit_ensemble")
Rows = dict[str, dict[str, Any]]  # path -> row


def read_scores(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as f:
        return [{**r, "label": int(r["label"]), "fake_prob": float(r["fake_prob"])} for r in csv.DictReader(f)]


def member_files(root: Path, member: str) -> dict[str, Path]:
    folder = root / member
    files = {p.stem: p for p in sorted(folder.glob("*.csv"))}
    if not files:
        raise SystemExit(f"no score files in {folder}")
    return files


def rows_for(files: dict[str, Path], fold: str, split: str) -> Rows:
    """A member's rows of `fold` / `split`; a fold-independent member (one file, no folds) gives all its rows."""
    if fold in files:
        return {r["path"]: r for r in read_scores(files[fold]) if r.get("split") == split}
    if any(k.startswith("loso_") or k == "in_dist" for k in files):
        return {}
    if len(files) != 1 and "all" not in files:
        raise SystemExit(f"a fold-independent member needs one score file or all.csv, found {sorted(files)}")
    return {r["path"]: r for r in read_scores(files.get("all") or next(iter(files.values())))}


def specialist_folds(names: str | None) -> list[Fold] | None:
    """The folds named by --folds (comma-separated), None for all; an unknown name is refused (pure)."""
    if not names:
        return None
    by_name = {f.name: f for f in FOLDS}
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in by_name]
    if unknown or not wanted:
        raise SystemExit(f"--folds: unknown fold(s) {unknown or names!r}; the folds are {sorted(by_name)}")
    return [by_name[n] for n in wanted]


def held_by(rows: Rows, folds: list[Fold] | None) -> set[str] | None:
    """The paths of rows that one of `folds` holds (its fake sources' fakes, its real sources' reals); None: all."""
    if folds is None:
        return None
    return {p for p, r in rows.items() if any(f.holds(int(r["label"]), r["source"]) for f in folds)}


def matrix(per_member: list[Rows], *, keep: set[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    common = set.intersection(*(set(r) for r in per_member))
    if keep is not None:
        common &= keep
    paths = sorted(common)
    d = np.array([[log_odds(np.array([rows[p]["fake_prob"]]))[0] for rows in per_member] for p in paths])
    y = np.array([per_member[0][p]["label"] for p in paths], dtype=int)
    meta = [per_member[0][p] for p in paths]
    return d.reshape(len(paths), len(per_member)), y, meta


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--member", action="append", required=True,
                   help="SCOREDIR=DETECTOR: score-file folder name = runtime detector name (short name or ref); "
                        "DETECTOR[kind] for a kinds model scored by that kind's head alone (loso_frozen.py "
                        "--score-kinds wrote its score files)")
    p.add_argument("--scores", type=Path, default=Path("runs/scores"))
    p.add_argument("--output", type=Path, help="write the ensemble checkpoint folder here")
    p.add_argument("--rule", choices=["auto", "mean", "val", "nested", "nested_pos", "lse"], default="auto")
    p.add_argument("--term", action="append",
                   help="adds rule lse (with --rule auto it competes with the linear rules by mean LOSO): one term of "
                        "the soft maximum, the score names of its members joined by `+` (e.g. --term syn --term swap "
                        "--term swap+sbi); every member must be in some term")
    p.add_argument("--name", default="ensemble")
    p.add_argument("--version", default="1.0")
    p.add_argument("--report", type=Path, help="write the LOSO table JSON here")
    p.add_argument("--heldout-scores", type=Path,
                   help="write the chosen rule's score of every fold's held-out rows here, as a member's score files "
                        "(loso_<fold>.csv), for `training/loso_gain.py`")
    p.add_argument("--max-fpr-gap", type=float, help="with --data and --rule auto: the best-LOSO rule whose largest "
                   "per-ethnicity FPR gap on the in-dist test reals is at most this")
    p.add_argument("--data", type=Path, help="the data root: adds per-ethnicity FPR of the in-dist test reals "
                   "(groups from manifest notes) for the ensemble and every member")
    p.add_argument("--folds", help="a specialist: only these LOSO folds (comma-separated, e.g. dfdc,lfw_faceswap) "
                   "judge the rules, and only the in-dist rows they hold fit its weights, temperature and threshold")
    p.add_argument("--title", default="UDFD ensemble (recommended)", help="its title in the app")
    p.add_argument("--limits", type=json.loads, help='limits to declare in config.json, e.g. \'{"large_face": '
                   '{"min_side": 400, "measured": "..."}}\' (udfd.pipeline.large_face_limit)')
    p.add_argument("--card-extra", type=Path, help="a Markdown file whose text the card carries before its Limits")
    args = p.parse_args(argv)
    only = specialist_folds(args.folds)
    if (args.rule == "lse" and not args.term) or (args.term and args.rule not in ("auto", "lse")):
        p.error("--rule lse needs --term; --term goes with --rule auto (lse competes) or lse")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    pairs = [m.split("=", 1) if "=" in m else (m, m) for m in args.member]
    score_names = [a for a, _ in pairs]
    files = {m: member_files(args.scores, m) for m in score_names}
    fold_names = sorted({k for fs in files.values() for k in fs if k.startswith("loso_")})
    if not fold_names:
        raise SystemExit("no loso_<fold>.csv score files: nothing to judge the ensemble by")

    every_fold, held_meta = [], {}
    for fold in fold_names:
        held = [rows_for(files[m], fold, "heldout") for m in score_names]
        val = [rows_for(files[m], fold, "val") for m in score_names]
        d_h, y_h, held_meta[fold.removeprefix("loso_")] = matrix(held)
        d_v, y_v, _ = matrix(val)
        log.info("fold %s: %d held-out rows, %d validation rows in common", fold, len(y_h), len(y_v))
        if len(y_h) == 0:
            continue
        every_fold.append(FoldData(fold.removeprefix("loso_"), d_v, y_v, d_h, y_h))
    judged = {f.name for f in every_fold} if only is None else {f.name for f in only}
    folds = [f for f in every_fold if f.name in judged]
    if not folds:
        raise SystemExit(f"no score files for the folds {args.folds}: nothing to judge the ensemble by")
    terms = parse_terms(args.term, score_names) if args.term else None
    rule_names = ("mean", "val", "nested", "nested_pos", *(("lse",) if terms else ()))
    table = loso_table(folds, score_names, rules=rule_names, terms=terms)
    means = {col: mean_of(v) for col, v in table.items()}
    pooled = loso_pooled(folds, score_names, rules=rule_names, terms=terms)
    rules = [c.split(":", 1)[1] for c in table if c.startswith("ensemble:")]
    # Final weights: `nested` -> all folds' held-out rows pooled; `val` / `mean` -> the final models' in-dist val.
    ind_val = [rows_for(files[m], "in_dist", "val") for m in score_names]
    ind_test = [rows_for(files[m], "in_dist", "test") for m in score_names]
    d_iv, y_iv, _ = matrix(ind_val, keep=held_by(ind_val[0], only))
    d_it, y_it, meta_it = matrix(ind_test, keep=held_by(ind_test[0], only))
    # Fairness: every real test face with a group, whatever its fold (a specialist is still shown every face).
    d_all, y_all, meta_all = (d_it, y_it, meta_it) if only is None else matrix(ind_test)
    ranked = [args.rule] if args.rule != "auto" else sorted(rules, key=lambda r: -(means[f"ensemble:{r}"] or 0.0))
    selection: dict[str, Any] = {}
    for rule in ranked:  # best mean LOSO first; with --max-fpr-gap the first whose real-face FPR gap is within it
        stack, temperature, threshold = final_stack(rule, folds, d_iv, y_iv, terms)
        prob_test = 1 / (1 + np.exp(-stack.score(d_it) / temperature))
        prob_all = 1 / (1 + np.exp(-stack.score(d_all) / temperature))
        gap = None
        if args.data:
            gap = (fairness(args.data, meta_all, y_all, {"e": (prob_all, threshold)})["e"]["fpr_gap"] or {}).get("gap")
        selection[rule] = {"loso_mean": means[f"ensemble:{rule}"], "fpr_gap": gap}
        if args.max_fpr_gap is None or (gap is not None and gap <= args.max_fpr_gap) or rule == ranked[-1]:
            break
    in_dist = {"test": binary_metrics(y_it, prob_test, threshold=threshold), "per_source": {}}
    for src in sorted({r["source"] for r in meta_it}):
        idx = [i for i, r in enumerate(meta_it) if r["source"] == src]
        in_dist["per_source"][src] = {"n": len(idx), "fake": int(y_it[idx].sum()),
                                      "accuracy": float(((prob_test[idx] >= threshold) == y_it[idx]).mean())}
    not_judged = loso_table([f for f in every_fold if f.name not in judged], score_names, rules=rule_names,
                            terms=terms) if only else None
    report = {"members": dict(pairs), "rule": rule, "terms": args.term if rule == "lse" else None,
              "rule_given": args.rule != "auto", "folds": [f.name for f in only] if only else None,
              "title": args.title, "loso_not_judged": not_judged, "limits": args.limits,
              "selection": {"max_fpr_gap": args.max_fpr_gap, "tried": selection},
              "loso": table, "loso_mean": means, "loso_pooled": pooled,
              "stack": stack.to_dict(), "temperature": temperature, "threshold": threshold,
              "in_dist_test_auc": auc(y_it, prob_test), "in_dist_member_test_auc":
                  {m: auc(y_it, d_it[:, j]) for j, m in enumerate(score_names)}, "n": {
                      "in_dist_val": len(y_iv), "in_dist_test": len(y_it),
                      "heldout": {f.name: len(f.y_heldout) for f in folds}}}
    if args.data:
        report["fairness"] = fairness(args.data, meta_all, y_all, {"ensemble": (prob_all, threshold)} | {
            m: (1 / (1 + np.exp(-d_all[:, j])), best_youden_threshold(y_iv, 1 / (1 + np.exp(-d_iv[:, j]))))
            for j, m in enumerate(score_names)})
    print(json.dumps(report, indent=1))
    if args.report:
        args.report.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.heldout_scores:
        scored = heldout_scores(folds, score_names, rules=(rule,), terms=terms)[f"ensemble:{rule}"]
        for f, s in zip(folds, scored, strict=True):
            # sigmoid(score / 8): the ranking (all an AUC reads), kept off 0 and 1 so six decimals do not tie
            rows = [ScoreRow(r["path"], int(r["label"]), r["source"], "heldout", float(1 / (1 + np.exp(-v / 8))))
                    for r, v in zip(held_meta[f.name], s, strict=True)]
            write_scores(args.heldout_scores / f"loso_{f.name}.csv", rows)
    if args.output:
        extra = args.card_extra.read_text(encoding="utf-8") if args.card_extra else ""
        write_checkpoint(args.output, report, name=args.name, version=args.version, extra=extra)
    return report


def parse_terms(terms: list[str], members: list[str]) -> list[list[int]]:
    """--term values (score names joined by `+`) -> member indices per term; unknown or unused members refused."""
    out = [[members.index(m) if m in members else -1 for m in t.split("+") if m] for t in terms]
    unknown = sorted({m for t in terms for m in t.split("+") if m and m not in members})
    unused = [m for i, m in enumerate(members) if not any(i in t for t in out)]
    if unknown or unused or not all(out):
        raise SystemExit(f"--term: unknown member(s) {unknown}, member(s) in no term {unused}; the members are "
                         f"{members}")
    return out


def final_stack(rule: str, folds: list[FoldData], d_iv: np.ndarray, y_iv: np.ndarray,
                terms: list[list[int]] | None = None) -> tuple[Any, float, float]:
    """(stack, temperature, threshold) of `rule` fitted on all the data it may use; calibrated on in-dist val."""
    n = d_iv.shape[1]
    scale = (d_iv.mean(axis=0), np.where(d_iv.std(axis=0) > 1e-6, d_iv.std(axis=0), 1.0))
    if rule.startswith("nested"):
        # Weights from unseen-source rows, each fold standardised by its own validation statistics.
        zs = [((f.d_heldout - f.d_val.mean(axis=0)) / np.where(f.d_val.std(axis=0) > 1e-6, f.d_val.std(axis=0), 1.0))
              for f in folds if len(f.d_val)]
        ys = [f.y_heldout for f in folds if len(f.d_val)]
        unit = fit_stack(np.concatenate(zs), np.concatenate(ys), rule=rule, scale=(np.zeros(n), np.ones(n)))
        stack = type(unit)(tuple(map(float, scale[0])), tuple(map(float, scale[1])), unit.weights, unit.bias, rule)
    elif rule == "lse":
        stack = fit_lse(d_iv, y_iv, terms or [])
    else:
        stack = fit_stack(d_iv, y_iv, rule=rule, scale=scale)
    s_val = stack.score(d_iv)
    temperature = fit_temperature(np.stack([np.zeros_like(s_val), s_val], axis=1), y_iv)
    return stack, temperature, best_youden_threshold(y_iv, 1 / (1 + np.exp(-s_val / temperature)))


def fairness(data: Path, meta: list[dict], y: np.ndarray, models: dict[str, tuple[np.ndarray, float]]) -> dict:
    """Per-ethnicity false-positive rate of the in-dist test reals whose manifest note names a group."""
    from udfd.evaluation.fairness import UNKNOWN, group_metrics, manifest_groups

    ethnicity = {rel: g[1] for rel, g in manifest_groups(data.resolve()).items()}
    keep = [i for i, r in enumerate(meta) if y[i] == 0 and ethnicity.get(r["path"], UNKNOWN) != UNKNOWN]
    groups = [ethnicity[meta[i]["path"]] for i in keep]
    out = {}
    for name, (prob, threshold) in models.items():
        m = group_metrics(y[keep], prob[keep], groups, threshold=threshold)
        out[name] = {"fpr": {g: r["fpr"] for g, r in m["groups"].items()}, "fpr_gap": m["largest_gaps"]["fpr"]}
    out["n"] = {g: groups.count(g) for g in sorted(set(groups))}
    return out


def member_spec(detector: str) -> dict[str, Any]:
    """`effnet_lite0` -> {"name": "effnet_lite0"}; `effnet_lite0_kinds[face_swap]` (the name such a member
    has in the product) -> that detector scored by those kinds' heads only (`+` between several) (pure)."""
    name, bracket, rest = detector.partition("[")
    if not bracket:
        return {"name": detector}
    kinds = [k for k in rest.removesuffix("]").split("+") if k]
    if not rest.endswith("]") or not kinds:
        raise SystemExit(f"--member ...={detector}: write DETECTOR[kind+kind], e.g. effnet_lite0_kinds[face_swap]")
    return {"name": name, "kinds": kinds}


def write_checkpoint(folder: Path, report: dict[str, Any], *, name: str, version: str, extra: str = "") -> None:
    from udfd.hub import CONFIG_NAME, UDFD_KEY

    folder.mkdir(parents=True, exist_ok=True)
    chosen = report["loso_mean"][f"ensemble:{report['rule']}"] or 0.0
    meta = {"family": "ensemble", "name": name, "version": version,
            "members": [member_spec(det) for det in report["members"].values()],
            "stack": report["stack"], "labels": {0: "real", 1: "fake"}, "threshold": report["threshold"],
            "temperature": report["temperature"], "threshold_rule": "youden on in-distribution val",
            "loso": report["loso"], "loso_mean": report["loso_mean"],
            "display": {"title": report.get("title") or "UDFD ensemble (recommended)",
                        "summary": ("combines " + ", ".join(report["members"].values()) + " by stacking fitted on"
                                    if len(report["members"]) > 1 else
                                    next(iter(report["members"].values())) + " alone, calibrated, chosen on")
                        + " held-out sources" + (f" ({', '.join(report['folds'])} only)" if report.get("folds") else ""),
                        "skill": f"mean AUC on held-out sources {chosen:.2f} (leave-one-source-out)"}}
    if report.get("limits"):
        meta["limits"] = report["limits"]  # udfd.pipeline.large_face_limit reads them
    (folder / CONFIG_NAME).write_text(json.dumps({UDFD_KEY: meta}, indent=1), encoding="utf-8")
    (folder / "eval_results.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    (folder / "README.md").write_text(card(report, name=name, version=version, extra=extra), encoding="utf-8")


def _f(v: float | None) -> str:
    return "–" if v is None else f"{v:.3f}"


def _fairness_lines(report: dict[str, Any]) -> list[str]:
    fair = report.get("fairness")
    if not fair or not fair.get("n"):
        return []
    groups = sorted(fair["n"])
    lines = ["## False positives on real faces by ethnicity (in-distribution test reals with a group label)", "",
             "| model | " + " | ".join(f"{g} (n={fair['n'][g]})" for g in groups) + " | largest gap |",
             "|---|" + "---:|" * (len(groups) + 1)]
    for model, entry in fair.items():
        if model != "n":
            gap = (entry.get("fpr_gap") or {}).get("gap")
            lines.append(f"| {model} | " + " | ".join(_f(entry["fpr"].get(g)) for g in groups) + f" | {_f(gap)} |")
    return [*lines, "", "Groups are small: one face moves a rate by 1/n.", ""]


def _chosen_by(report: dict[str, Any]) -> str:
    sel = report.get("selection") or {}
    rules = " / ".join(c.split(":", 1)[1] for c in report["loso"] if c.startswith("ensemble:"))
    if report.get("rule_given"):
        return f"given to `training/fit_ensemble.py` as `--rule {report['rule']}`; the table has {rules} beside it"
    if sel.get("max_fpr_gap") is None:
        return f"chosen by mean leave-one-source-out AUC among {rules}"
    tried = "; ".join(f"{r}: LOSO {_f(t['loso_mean'])}, FPR gap {_f(t['fpr_gap'])}" for r, t in sel["tried"].items())
    return (f"the best mean leave-one-source-out AUC among the rules whose largest per-ethnicity false-positive-rate "
            f"gap on the in-distribution test reals is at most {sel['max_fpr_gap']:g}, tried in LOSO order: {tried}")


def _weights_lines(report: dict[str, Any]) -> list[str]:
    stack = report["stack"]
    if stack.get("terms"):
        return ["## Terms", "", "Per term, the mean and standard deviation on the validation reals of the mean of its "
                "members' standardised log-odds: " + ", ".join(
                    f"`{t}` {m:+.3f} / {s:.3f}" for t, m, s in zip(report["terms"], stack["term_mu"],
                                                                   stack["term_sd"], strict=True))
                + f"; bias {stack['bias']:+.3f}. No member is weighted or inverted: a term can only raise the score.",
                ""]
    return ["## Weights", "",
            "Standardised member weights " + ", ".join(f"{m} {w:+.3f}" for m, w in
                                                      zip(report["members"].values(), stack["weights"], strict=True))
            + f", bias {stack['bias']:+.3f}. A negative weight means the member is used upside down: the "
            "stacking found it consistently wrong on the other folds' unseen sources and inverted it. Read the "
            "per-fold table before trusting that: an inversion that helps some sources hurts the others.", ""]


def card(report: dict[str, Any], *, name: str, version: str, extra: str = "") -> str:
    """The model card; `extra` (Markdown, e.g. what a specialist is for) goes before its Limits."""
    table = report["loso"]
    folds = sorted({f for col in table.values() for f in col})
    cols = list(table)
    lines = [
        "---", "license: other", "tags: [deepfake-detection, udfd, ensemble]", "---", "",
        f"# {name} (UDFD calibrated ensemble, version {version})", "",
        "Members (by name, loaded through the UDFD loader; their own cards describe them): "
        + ", ".join(f"`{det}`" for det in report["members"].values()) + ".", "",
        *(["Each member's calibrated log-odds of *fake* are standardised on the validation reals; the score is the "
            "log-sum-exp (a soft maximum) over the terms " + ", ".join(f"`{t}`" for t in report["terms"])
            + ", each term the mean of its members' standardised log-odds, standardised again on the validation "
            "reals; fake_prob = sigmoid(s / T). A face is as fake as its most fake-looking term says. Standardisation, "
            "temperature and threshold are in `config.json` (JSON, no pickle), fitted by `training/fit_ensemble.py` "
            "from the members' score files.", ""] if report.get("terms") else
          ["Each member's calibrated log-odds of *fake* are standardised and combined linearly; fake_prob = "
           "sigmoid(s / T). Weights, temperature and threshold are in `config.json` (JSON, no pickle), fitted by "
           "`training/fit_ensemble.py` from the members' score files.", ""]),
        *([f"A specialist: only the folds {', '.join(report['folds'])} judged the rules, and only the in-distribution "
           "rows they hold (their fake sources' fakes, their real sources' reals) fitted the weights, temperature "
           "and threshold.", ""] if report.get("folds") else []),
        f"Combination rule: **{report['rule']}** ({_chosen_by(report)}; see `udfd/evaluation/stacking.py`). "
        f"Temperature {report['temperature']:.3f}, threshold {report['threshold']:.3f} (Youden on in-distribution "
        "val).", "",
        "## Leave-one-source-out (held-out fake source vs a disjoint held-out real group; AUC)", "",
        "| fold | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols),
    ]
    for f in folds:
        lines.append(f"| {f} | " + " | ".join(_f(table[c].get(f)) for c in cols) + " |")
    lines.append("| **mean** | " + " | ".join(_f(report["loso_mean"][c]) for c in cols) + " |")
    if report.get("loso_pooled"):
        lines.append("| **pooled** | " + " | ".join(_f(report["loso_pooled"].get(c)) for c in cols) + " |")
    other = report.get("loso_not_judged") or {}
    for f in sorted({f for col in other.values() for f in col}):
        lines.append(f"| {f} (not judged) | " + " | ".join(_f(other.get(c, {}).get(f)) for c in cols) + " |")
    if report.get("loso_pooled"):  # after the table: a line inside it would end it
        lines += ["", "*pooled*: every fold's held-out rows together, each scored by its own fold's model, so one "
                  "threshold has to fit every held-out source."]
    lines += ["", f"In-distribution test AUC: ensemble {_f(report['in_dist_test_auc'])}; members "
              + ", ".join(f"{m} {_f(v)}" for m, v in report["in_dist_member_test_auc"].items()) + ".", "",
              *_fairness_lines(report),
              *_weights_lines(report),
              *([extra.strip(), ""] if extra.strip() else []),
              "## Limits", "",
              "A probability is not proof. The LOSO folds are five groups of our 17 dev sources; fakes from methods "
              "unlike all of them (new generators, heavy post-processing) can still be missed. Members trained by "
              "UDFD saw every dev source in their final version; only the LOSO table measures unseen sources.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
