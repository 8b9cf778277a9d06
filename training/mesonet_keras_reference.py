"""Reference outputs of the authors' MesoNet weights under Keras, for tests/test_mesonet.py.

Run ONCE, in a throwaway virtual environment outside the repository (TensorFlow is not a project dependency):

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu h5py numpy pillow
    /tmp/tfvenv/bin/python training/mesonet_keras_reference.py --weights ../shared/weights/mesonet \\
        --faces ../shared/data/faces --out tests/fixtures/mesonet_keras_outputs.json

It rebuilds Meso-4 and MesoInception-4 in Keras from the architecture of Afchar et al. (WIFS 2018) as the authors
publish it (conv → ReLU → BatchNorm → max-pool blocks; Dense 16 → LeakyReLU 0.1 → Dense 1 sigmoid), lets Keras load
each .h5 file with its own loader, and records the sigmoid output P(real) for 4 seeded random inputs and 2 dev face
crops. The inputs are rebuilt by `reference_inputs` (numpy + Pillow only), which the test imports too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

SIZE = 256
SEED = 0
N_RANDOM = 4
FACES = ("real/lfw/real_1005.jpg", "fake/dfdc_faces/aabyjxwqyo.jpg")  # relative to ../shared/data/faces
WEIGHT_FILES = {
    "meso4": ("Meso4_DF.h5", "Meso4_F2F.h5"),
    "mesoinception4": ("MesoInception_DF.h5", "MesoInception_F2F.h5"),
}


def face_input(path: Path) -> tuple[np.ndarray, str]:
    """A face file -> (256, 256, 3) float32 in [0, 1] (nearest-neighbour resize by index) and the decoded
    pixels' sha256, so a test can tell a decoder difference from a model difference."""
    from PIL import Image

    with Image.open(path) as im:
        pixels = np.asarray(im.convert("RGB"), dtype=np.uint8)
    h, w = pixels.shape[:2]
    rows, cols = (np.arange(SIZE) * h) // SIZE, (np.arange(SIZE) * w) // SIZE
    resized = pixels[rows][:, cols]
    return resized.astype(np.float32) / 255.0, hashlib.sha256(pixels.tobytes()).hexdigest()


def random_inputs() -> np.ndarray:
    return np.random.default_rng(SEED).random((N_RANDOM, SIZE, SIZE, 3), dtype=np.float32)


def _keras_model(variant: str):  # noqa: ANN202 - keras is only importable in the throwaway venv
    from tensorflow import keras
    from tensorflow.keras import layers

    def conv(x, n: int, k: int, dilation: int = 1):  # noqa: ANN001, ANN202
        return layers.Conv2D(n, k, padding="same", dilation_rate=dilation, activation="relu")(x)

    def inception(x, a: int, b: int, c: int, d: int):  # noqa: ANN001, ANN202
        x1 = conv(x, a, 1)
        x2 = conv(conv(x, b, 1), b, 3)
        x3 = conv(conv(x, c, 1), c, 3, dilation=2)
        x4 = conv(conv(x, d, 1), d, 3, dilation=3)
        return layers.Concatenate(axis=-1)([x1, x2, x3, x4])

    def bn_pool(x, pool: int):  # noqa: ANN001, ANN202
        return layers.MaxPooling2D(pool_size=pool, padding="same")(layers.BatchNormalization()(x))

    inp = keras.Input(shape=(SIZE, SIZE, 3))
    if variant == "meso4":
        y = bn_pool(conv(inp, 8, 3), 2)
        y = bn_pool(conv(y, 8, 5), 2)
    else:
        y = bn_pool(inception(inp, 1, 4, 4, 2), 2)
        y = bn_pool(inception(y, 2, 4, 4, 2), 2)
    y = bn_pool(conv(y, 16, 5), 2)
    y = bn_pool(conv(y, 16, 5), 4)
    y = layers.Dropout(0.5)(layers.Flatten()(y))
    y = layers.LeakyReLU(negative_slope=0.1)(layers.Dense(16)(y))
    out = layers.Dense(1, activation="sigmoid")(layers.Dropout(0.5)(y))
    return keras.Model(inp, out)


def _creation_index(name: str, kind: str) -> int:
    """Keras numbers layers of a kind in creation order: conv2d, conv2d_1, conv2d_2, ..."""
    return 0 if name == kind else int(name.removeprefix(kind + "_"))


def _check_loaded_in_creation_order(model, h5_path: Path) -> None:  # noqa: ANN001
    """Keras 3 loads legacy .h5 weights by layer order, not name. Inception branches have equal shapes, so check
    that the k-th Conv2D / BatchNormalization / Dense we created holds the file's k-th by the authors' numbering."""
    import h5py

    with h5py.File(h5_path, "r") as f:
        for kind, cls_name in (("conv2d", "Conv2D"), ("batch_normalization", "BatchNormalization"), ("dense", "Dense")):
            names = sorted((n for n in f if n.rsplit("_", 1)[0] == kind), key=lambda n: _creation_index(n, kind))
            ours = sorted(
                (layer for layer in model.layers if type(layer).__name__ == cls_name),
                key=lambda layer: _creation_index(layer.name, kind),
            )
            if len(names) != len(ours):
                raise ValueError(f"{h5_path.name}: {len(names)} {kind} layers in the file, {len(ours)} in the model")
            for name, layer in zip(names, ours, strict=True):
                first = np.asarray(f[name][name][list(f[name][name])[-1]])  # kernel / moving_variance, sorted last
                held = [np.asarray(w) for w in layer.get_weights()]
                if not any(w.shape == first.shape and np.array_equal(w, first) for w in held):
                    raise ValueError(f"{h5_path.name}: Keras layer {layer.name} does not hold {name}'s weights")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", type=Path, default=Path("../shared/weights/mesonet"))
    p.add_argument("--faces", type=Path, default=Path("../shared/data/faces"))
    p.add_argument("--out", type=Path, default=Path("tests/fixtures/mesonet_keras_outputs.json"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import tensorflow as tf

    faces = [face_input(args.faces / rel) for rel in FACES]
    batch = np.concatenate([random_inputs(), np.stack([f[0] for f in faces])])
    outputs = {}
    for variant, files in WEIGHT_FILES.items():
        model = _keras_model(variant)
        for name in files:
            model.load_weights(str(args.weights / name))
            _check_loaded_in_creation_order(model, args.weights / name)
            hidden_model = tf.keras.Model(model.input, model.layers[-3].output)  # LeakyReLU after Dense 16
            hidden = hidden_model.predict(batch, batch_size=len(batch), verbose=0).astype(np.float64)
            kernel, bias = (w.astype(np.float64) for w in model.layers[-1].get_weights())
            z = hidden @ kernel[:, 0] + bias[0]  # the last Dense before its sigmoid (P(real) saturates in float32)
            p_real = model.predict(batch, batch_size=len(batch), verbose=0)[:, 0]
            outputs[name] = {
                "variant": variant,
                "p_real": [float(v) for v in p_real],
                "z": [float(v) for v in z],
                "hidden": [[round(float(v), 7) for v in row] for row in hidden],
                "h5_sha256": hashlib.sha256((args.weights / name).read_bytes()).hexdigest(),
            }
    fixture = {
        "about": "Keras outputs (sigmoid = P(real)) of the authors' MesoNet weights; made by "
        "training/mesonet_keras_reference.py in a throwaway venv",
        "tensorflow": tf.__version__,
        "keras": tf.keras.__version__ if hasattr(tf.keras, "__version__") else "",
        "inputs": {
            "random": {
                "seed": SEED,
                "n": N_RANDOM,
                "size": SIZE,
                "how": "np.random.default_rng(seed).random((n, size, size, 3), dtype=float32)",
            },
            "faces": [{"path": rel, "pixels_sha256": sha} for rel, (_, sha) in zip(FACES, faces, strict=True)],
        },
        "outputs": outputs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(fixture, indent=1) + "\n", encoding="utf-8")
    for name, o in outputs.items():
        print(name, np.round(o["p_real"], 6))  # a one-off script run by hand, not library code


if __name__ == "__main__":
    main()
