"""Model cards rendered from `model_cards/` templates with huggingface_hub's ModelCard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from udfd.config import PROJECT_ROOT

TEMPLATES = PROJECT_ROOT / "model_cards"
CARD_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "log_loss", "brier")


def eval_results(results: dict[str, dict[str, Any]], *, model_name: str, dataset: str,
                 task_type: str = "image-classification") -> list[Any]:
    """`EvalResult`s for the card metadata: one per (split or split/source, metric) with a value."""
    from huggingface_hub import EvalResult

    out = []
    for split, metrics in results.items():
        for metric in CARD_METRICS:
            value = metrics.get(metric)
            if value is None:
                continue
            out.append(EvalResult(task_type=task_type, dataset_type="imagefolder",
                                  dataset_name=dataset, dataset_split=split, metric_type=metric,
                                  metric_name=f"{metric} ({split})", metric_value=round(float(value), 4)))
    return out


def render_card(
    *,
    template: str,
    model_name: str,
    dataset: str,
    results: dict[str, dict[str, Any]],
    context: dict[str, Any],
    task_type: str = "image-classification",
) -> str:
    """Card text: YAML metadata (licence, tags, model-index with EvalResults) + the Jinja template body."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        license="other",
        library_name=context.get("library_name"),  # set by the training script from the saved config
        pipeline_tag=task_type,
        tags=["deepfake-detection", "udfd", str(context.get("family", ""))],
        model_name=model_name,
        eval_results=eval_results(results, model_name=model_name, dataset=dataset, task_type=task_type) or None,
    )
    card = ModelCard.from_template(data, template_path=str(TEMPLATES / template), model_name=model_name,
                                   dataset=dataset, results=results, metric_names=CARD_METRICS, **context)
    return str(card)


def write_card(folder: Path, text: str) -> Path:
    path = folder / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


ROBUSTNESS_START = "<!-- robustness -->"  # the markers replace_robustness_section looks for
ROBUSTNESS_END = "<!-- /robustness -->"


def robustness_markdown(entry: dict[str, Any], *, how: str) -> str:
    """A card's robustness table from one detector's `evaluate_folder(...)["robustness"][name]` (pure)."""
    c = entry["clean"]
    auc = f"{c['roc_auc']:.3f}" if c["roc_auc"] is not None else "–"
    unit, where = (("face crops", "the crop itself perturbed, no face re-detection") if entry.get("scope") == "crops"
                   else ("images", "faces detected again on the perturbed image"))
    lines = [
        f"Measured by `{how}`: the same {c['n']} {unit} scored clean and after each perturbation ({where}),",
        f"at this checkpoint's threshold. Δ = perturbed − clean. *Flips*: share of {unit} whose verdict changes;",
        "*real → fake*: share of real ones newly called fake.",
        "",
        f"Clean: accuracy {c['accuracy']:.3f}, ROC-AUC {auc}, ECE (15 bins) {c['ece']:.3f}.",
        "",
        "| perturbation | ROC-AUC | Δ AUC | accuracy | Δ accuracy | mean \\|Δ fake_prob\\| | flips | real → fake "
        "| fake → real |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f(v: float | None, fmt: str = ".3f") -> str:
        return "–" if v is None else format(v, fmt)

    for name, r in entry["perturbed"].items():
        lines.append(f"| {name} | {f(r['roc_auc'])} | {f(r['delta_roc_auc'], '+.3f')} | {f(r['accuracy'])} | "
                     f"{f(r['delta_accuracy'], '+.3f')} | {f(r['mean_abs_delta_fake_prob'])} | "
                     f"{f(r['flip_share'], '.1%')} | {f(r['real_newly_fake_share'], '.1%')} | "
                     f"{f(r['fake_newly_real_share'], '.1%')} |")
    return "\n".join(lines)


def replace_marked_block(text: str, name: str, content: str, *, heading: str, before: str = "") -> str:
    """`text` with the block between `<!-- name -->` and `<!-- /name -->` replaced by `content` (pure).

    Without the markers a new section (`heading`, then the block) goes before the line starting with `before`,
    or at the end.
    """
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{content}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        return head + block + rest.split(end, 1)[1]
    section = f"{heading}\n\n{block}\n\n"
    if before and before in text:
        head, tail = text.split(before, 1)
        return head + section + before + tail
    return text.rstrip("\n") + "\n\n" + section


def replace_robustness_section(card: str, table: str) -> str:
    """The card with its robustness block replaced; a "## Robustness" section before "Intended use" if absent."""
    return replace_marked_block(card, "robustness", table, heading="## Robustness", before="## Intended use")


LOSO_DATASET = "UDFD dev faces, leave-one-source-out (fold's fakes and matching reals held out of training)"
IN_DIST_DATASET = "UDFD dev faces, in-distribution test split"


def eval_index(*, loso: dict[str, float | None], in_dist_auc: float | None = None,
               loso_mean: float | None = None) -> list[Any]:
    """`EvalResult`s for the LOSO table (one ROC-AUC per held-out fold, plus the mean) and the in-dist test AUC."""
    from huggingface_hub import EvalResult

    def result(dataset: str, split: str, value: float, name: str) -> Any:
        return EvalResult(task_type="image-classification", dataset_type="udfd-dev-faces", dataset_name=dataset,
                          dataset_split=split, metric_type="roc_auc", metric_name=name,
                          metric_value=round(float(value), 4))

    out = [result(LOSO_DATASET, f"heldout:{fold}", auc, f"LOSO ROC-AUC ({fold} held out)")
           for fold, auc in sorted(loso.items()) if auc is not None]
    if loso_mean is not None:
        out.append(result(LOSO_DATASET, "heldout:mean", loso_mean, "LOSO ROC-AUC (mean over folds)"))
    if in_dist_auc is not None:
        out.append(result(IN_DIST_DATASET, "test", in_dist_auc, "ROC-AUC (in-distribution test)"))
    return out


def with_model_index(card: str, results: list[Any], *, model_name: str) -> str:
    """The card with `results` in its model-index, replacing earlier LOSO / in-dist entries of `eval_index` (pure).

    Other eval results already in the card (e.g. the training script's per-split metrics) are kept.
    """
    from huggingface_hub import ModelCard

    parsed = ModelCard(card)
    ours = {LOSO_DATASET, IN_DIST_DATASET}
    kept = [r for r in (parsed.data.eval_results or []) if r.dataset_name not in ours]
    parsed.data.eval_results = kept + list(results)
    parsed.data.model_name = parsed.data.model_name or model_name
    return str(parsed)
