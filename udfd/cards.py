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
        library_name="transformers" if context.get("family") == "vit" else None,
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
