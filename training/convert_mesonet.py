"""Convert the authors' MesoNet Keras weights (.h5, read with h5py: no TensorFlow) into `mesonet` checkpoints.

    python training/convert_mesonet.py --weights ../shared/weights/mesonet --out models
    python training/convert_mesonet.py ... --dev-report runs/scores/mesonet/summary.json  # + dev-data tables

Each .h5 becomes models/udfd-<name>/ with model.safetensors (float32: 0.2 MB), config.json (udfd metadata with the
source file's sha256) and README.md, the model card crediting Afchar et al. Keras stores conv kernels as
(kh, kw, in, out) and Dense kernels as (in, out); layers are matched in the order the authors' code creates them
(their Keras names are numbered in that order), and every shape is checked.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from udfd.cards import write_card
from udfd.detectors.mesonet import MesoNetDetector

log = logging.getLogger(__name__)

SOURCE_REPO = "https://github.com/DariusAf/MesoNet"
SOURCE_COMMIT = "2144d56a30e48cdcac1976ff13a1c5cdc86376c6"
PAPER = (
    "Afchar, D., Nozick, V., Yamagishi, J., & Echizen, I. (2018). MesoNet: a Compact Facial Video Forgery "
    "Detection Network. IEEE International Workshop on Information Forensics and Security (WIFS). "
    "arXiv:1809.00888"
)
TRAINING_DATA = {
    "DF": (
        "the authors' Deepfake set: aligned faces from deepfake videos they collected online and real faces from "
        "similar sources (training 5,111 forged / 7,250 real images, validation 2,889 / 4,259, per their README)"
    ),
    "F2F": "Face2Face-manipulated and original faces from the FaceForensics dataset (Rössler et al., 2018)",
}
# (file, folder, variant, training set)
CHECKPOINTS = (
    ("Meso4_DF.h5", "udfd-mesonet4-df", "meso4", "DF"),
    ("Meso4_F2F.h5", "udfd-mesonet4-f2f", "meso4", "F2F"),
    ("MesoInception_DF.h5", "udfd-mesoinception-df", "mesoinception4", "DF"),
    ("MesoInception_F2F.h5", "udfd-mesoinception-f2f", "mesoinception4", "F2F"),
)
_INCEPTION_CONVS = ("b1.0", "b2.0", "b2.2", "b3.0", "b3.2", "b4.0", "b4.2")  # the order the authors create them


def torch_layers(variant: str) -> dict[str, list[str]]:
    """Our module names per Keras layer kind, in the authors' creation order."""
    if variant == "meso4":
        convs = [f"blocks.{i}.conv" for i in range(4)]
    else:
        convs = [f"blocks.{b}.{c}" for b in (0, 1) for c in _INCEPTION_CONVS] + ["blocks.2.conv", "blocks.3.conv"]
    return {"conv2d": convs, "batch_normalization": [f"blocks.{i}.bn" for i in range(4)], "dense": ["head.1", "head.4"]}


def _creation_index(name: str, kind: str) -> int:
    return 0 if name == kind else int(name.removeprefix(kind + "_"))


def keras_layers(f: h5py.File, kind: str) -> list[dict[str, np.ndarray]]:
    """The weights of every layer of one kind, in creation order: [{"kernel": ..., "bias": ...}, ...]."""
    names = sorted((n for n in f if n.rsplit("_", 1)[0] == kind or n == kind), key=lambda n: _creation_index(n, kind))
    out = []
    for n in names:
        group = f[n][n]
        out.append({key.split(":")[0]: np.asarray(group[key], dtype=np.float32) for key in group})
    return out


def state_dict_from_h5(path: Path, variant: str) -> dict[str, torch.Tensor]:
    """Keras tensors -> our state_dict (NCHW kernels, (out, in) Dense weights, BN running statistics)."""
    state: dict[str, torch.Tensor] = {}
    with h5py.File(path, "r") as f:
        for kind, ours in torch_layers(variant).items():
            theirs = keras_layers(f, kind)
            if len(theirs) != len(ours):
                raise ValueError(f"{path.name}: {len(theirs)} {kind} layers, the {variant} network has {len(ours)}")
            for prefix, w in zip(ours, theirs, strict=True):
                if kind == "conv2d":
                    state[f"{prefix}.weight"] = torch.from_numpy(w["kernel"].transpose(3, 2, 0, 1).copy())
                    state[f"{prefix}.bias"] = torch.from_numpy(w["bias"])
                elif kind == "dense":  # the first Dense sees an (H, W, C) flatten; MesoNet.forward flattens so
                    state[f"{prefix}.weight"] = torch.from_numpy(w["kernel"].T.copy())
                    state[f"{prefix}.bias"] = torch.from_numpy(w["bias"])
                else:
                    state[f"{prefix}.weight"] = torch.from_numpy(w["gamma"])
                    state[f"{prefix}.bias"] = torch.from_numpy(w["beta"])
                    state[f"{prefix}.running_mean"] = torch.from_numpy(w["moving_mean"])
                    state[f"{prefix}.running_var"] = torch.from_numpy(w["moving_variance"])
    return state


def convert(path: Path, *, variant: str) -> MesoNetDetector:
    det = MesoNetDetector.create({"variant": variant})
    expected = det.net.state_dict()
    state = state_dict_from_h5(path, variant)
    for key, tensor in state.items():
        if key not in expected or expected[key].shape != tensor.shape:
            raise ValueError(
                f"{path.name}: {key} {tuple(tensor.shape)} does not fit the {variant} network "
                f"({tuple(expected[key].shape) if key in expected else 'no such tensor'})"
            )
    state |= {k: v for k, v in expected.items() if k.endswith("num_batches_tracked")}
    det.net.load_state_dict(state, strict=True)
    det.module().eval()
    return det


def auc_table(rows: dict[str, dict[str, Any]]) -> str:
    lines = ["| source | real n | fake n | AUC | what it compares |", "|---|---:|---:|---:|---|"]
    for source, r in rows.items():
        auc = "–" if r["auc"] is None else f"{r['auc']:.3f}"
        lines.append(f"| {source} | {r['n_real']} | {r['n_fake']} | {auc} | {r['vs']} |")
    return "\n".join(lines)


def dev_section(dev: dict[str, Any]) -> str:
    """One summary of training/score_faces.py as markdown: how it was made, pooled AUC, the per-source table."""
    return (
        f"**{dev['sample'][0].upper() + dev['sample'][1:]}** of `../shared/data/faces` ({dev['n_real']} real / "
        f"{dev['n_fake']} fake images), scored like `udfd evaluate` (the pipeline's MediaPipe face crops, most-fake "
        f"face per image): `{dev['command']}`. Pooled **AUC {dev['overall_auc']:.3f}**; accuracy at the authors' "
        f"threshold 0.5: {dev['overall_accuracy']:.3f}. AUCs rank by the logit, in the same order as fake_prob "
        f"but without ties: a Verdict rounds fake_prob to 6 decimals, and MesoInception puts many faces at 0.000000, "
        f"so `udfd evaluate` can give it a slightly different AUC.\n\n"
        + auc_table(
            dev["per_source"] | {k: v | {"vs": "these two sources alone"} for k, v in dev.get("pairs", {}).items()}
        )
    )


def render_card(*, name: str, file: str, variant: str, data: str, sha256: str, dev: list[dict[str, Any]]) -> str:
    title = {"meso4": "Meso-4", "mesoinception4": "MesoInception-4"}[variant]
    params = sum(p.numel() for p in MesoNetDetector.build({"variant": variant, "image_size": 256}).parameters())
    dev_text = (
        "\n\n".join(dev_section(d) for d in dev)
        if dev
        else "Not scored yet: run training/score_faces.py, then this script with `--dev-report`."
    )
    return f"""---
license: apache-2.0
pipeline_tag: image-classification
tags:
- deepfake-detection
- udfd
- mesonet
---

# {name}: {title} with the authors' {data} weights

**Not trained here.** These are the published weights of {title} by Darius Afchar, Vincent Nozick, Junichi Yamagishi
and Isao Echizen, converted without change from `{file}` ({SOURCE_REPO} @ `{SOURCE_COMMIT}`, `weights/`;
sha256 `{sha256}`) into a PyTorch re-implementation (`udfd/detectors/mesonet.py`) by `training/convert_mesonet.py`.
Licence: Apache-2.0, as the authors' repository (its LICENSE is in `../shared/weights/mesonet/LICENSE`).

> {PAPER}

- **Training data (the authors')**: {TRAINING_DATA[data]}. Nothing of ours was used to train or calibrate it.
- **Input**: one RGB face crop resized to 256×256, scaled to [0, 1]. (The authors' generator resized with Keras'
  default nearest-neighbour; we resize like every other family, area/bilinear, which can move scores slightly.)
- **Output**: the authors' single sigmoid is P(real); we report fake_prob = 1 − P(real) through two-class logits
  (z/2, −z/2), temperature 1, threshold 0.5.
- **Faithful to the original**: `tests/test_mesonet.py` checks our outputs against Keras' own (TensorFlow
  2.21 / Keras 3, loading this .h5 into the authors' published architecture) on 4 seeded random inputs and 2 dev face
  crops, to 1e-5 (fixture: `tests/fixtures/mesonet_keras_outputs.json`, made once by
  `training/mesonet_keras_reference.py` in a throwaway venv).
- **Doubt**: the authors' code puts a LeakyReLU(0.1) after the Dense-16 layer of both networks, and we follow it; the
  Meso-4 .h5 files list no LeakyReLU layer (the MesoInception files do), so Meso-4 may have been trained with another
  activation there. The Keras check cannot tell, since both sides use the published architecture.

## Scores on our dev data (not the authors' data: every source is out of distribution for it)

{dev_text}

Reading these numbers: an AUC below 0.5 means the network calls that source's fakes *more real* than the reals.
The like-for-like comparisons are the rows of sources with both classes (DFDC: its own reals vs its own fakes) and the
"alone" pairs. Against every image of the other class, the clean high-resolution sets (GAN and diffusion fakes;
CelebA-HQ and FFHQ reals) tend to look real to these networks and the small, compressed JPEG sets (LFW, UTKFace, FairFace
reals) fake; the pattern is strongest in the DF weights' tables and weaker, same direction, in the F2F ones. That is
consistent with networks that react to image quality and compression more than to manipulation outside the
manipulated video frames they were trained on. Threshold and temperature were not refitted on our data.

## Intended use

A published, compact ({params:,} parameters) baseline and a candidate ensemble member, only where it shows skill.
Do not use it alone to judge whether a face is fake.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=Path("../shared/weights/mesonet"))
    p.add_argument("--out", type=Path, default=Path("models"))
    p.add_argument(
        "--dev-report",
        type=Path,
        action="append",
        default=[],
        help="summary.json from training/score_faces.py (repeatable): per-source AUCs go into each card",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    reports = [json.loads(path.read_text(encoding="utf-8")) for path in args.dev_report]
    for file, folder, variant, data in CHECKPOINTS:
        source = args.weights / file
        sha256 = hashlib.sha256(source.read_bytes()).hexdigest()
        det = convert(source, variant=variant)
        name = folder.removeprefix("udfd-").replace("-", "_")  # the short name in udfd/config.py
        det.name = name
        det.version = "authors-2018"
        meta = {
            "name": name,
            "version": det.version,
            "source": {
                "file": file,
                "sha256": sha256,
                "repo": SOURCE_REPO,
                "commit": SOURCE_COMMIT,
                "licence": "Apache-2.0",
                "paper": PAPER,
                "training_data": TRAINING_DATA[data],
            },
            "converted_by": "training/convert_mesonet.py",
        }
        det.save_pretrained(args.out / folder, metadata=meta, fp16=False)
        card = render_card(
            name=name, file=file, variant=variant, data=data, sha256=sha256, dev=[r[name] for r in reports if name in r]
        )
        write_card(args.out / folder, card)
        log.info("wrote %s (%s, %s)", args.out / folder, variant, file)


if __name__ == "__main__":
    main()
