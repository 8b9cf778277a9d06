"""Make the app's example images from FairFace (CC BY 4.0) with the project's own code; writes examples/.

    python training/make_examples.py --fairface ../shared/data/faces/real/fairface --out examples

- two real FairFace photos, copied byte for byte;
- one face swap made here: the face of one FairFace photo warped onto another by a similarity transform fitted on
  MediaPipe FaceMesh landmarks (the product's own landmark code, udfd.lips), blended with OpenCV's Poisson
  seamlessClone inside the landmark hull. A classic landmark face swap (the kind in the LFW swaps), made only to
  show what a fake looks like to the app; same licence as its sources;
- two short clips for the Video tab, one from a real photo and one from the face swap: the still image under a slow
  zoom and pan with a slight change of brightness (a "Ken Burns" move, not a recorded video), VP9 in MP4 as
  OpenCV writes it (decoded by OpenCV, played by browsers; the MP4 muxer writes no date, so the bytes repeat).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from udfd.lips import LipCropper  # noqa: E402

log = logging.getLogger("training.make_examples")
REALS = ("fairface_0098.jpg", "fairface_0224.jpg")  # a woman and a man, 20-29 and 20-49 (FairFace labels)
SWAP = ("fairface_0175.jpg", "fairface_0085.jpg")  # face of the first onto the second
CLIPS = {"real_fairface_0098.jpg": "real_fairface_0098_zoom.mp4",
         "fake_faceswap_fairface_0175_on_0085.jpg": "fake_faceswap_fairface_0175_on_0085_zoom.mp4"}
CLIP_SECONDS, CLIP_FPS, CLIP_SIDE = 3.0, 15, 320
ATTRIBUTION = """# Example images

Used by the app's Examples (and the tests). Licence: **CC BY 4.0**, like their source.

| file | what | source |
|---|---|---|
| `real_fairface_0098.jpg` | real photo | FairFace `fairface_0098.jpg` |
| `real_fairface_0224.jpg` | real photo | FairFace `fairface_0224.jpg` |
| `fake_faceswap_fairface_0175_on_0085.jpg` | **fake made by this project**: the face of FairFace `fairface_0175.jpg` swapped onto `fairface_0085.jpg` by `training/make_examples.py` (FaceMesh landmarks, similarity warp, Poisson blending) | derived from the two FairFace images |
| `real_fairface_0098_zoom.mp4` | **clip made by this project** from the real photo `real_fairface_0098.jpg`: 3 s, 15 fps, 320×320, a slow zoom and pan with a slight change of brightness (the photo moves; it is not a recorded video), VP9 in MP4 | derived from FairFace `fairface_0098.jpg` |
| `fake_faceswap_fairface_0175_on_0085_zoom.mp4` | **fake clip made by this project**: the face swap above under the same zoom and pan | derived from the two FairFace images |

FairFace: K. Kärkkäinen and J. Joo, "FairFace: Face Attribute Dataset for Balanced Race, Gender, and Age for Bias
Measurement and Mitigation", WACV 2021. Copyright (c) FairFace Dataset Authors, CC BY 4.0
(https://creativecommons.org/licenses/by/4.0/). Files taken from `thlaiquid-ai/demographic-test-images` @
3225e93 (see ../shared/data/SOURCES.md); the two real files are unmodified. The face swap and both clips are
adaptations made by `training/make_examples.py` and are shared under the same licence.
"""


def face_swap(src: np.ndarray, dst: np.ndarray, src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """The face of `src` on `dst` (RGB uint8, (468, 2) landmark pixels each). Pure."""
    matrix, _ = cv2.estimateAffinePartial2D(src_pts.astype(np.float32), dst_pts.astype(np.float32))
    h, w = dst.shape[:2]
    warped = cv2.warpAffine(src, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    hull = cv2.convexHull(dst_pts.astype(np.int32))
    mask = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(mask, hull, 255)
    mask = cv2.erode(mask, np.ones((7, 7), np.uint8))
    x, y, bw, bh = cv2.boundingRect(hull)
    centre = (x + bw // 2, y + bh // 2)
    return cv2.seamlessClone(warped, dst, mask, centre, cv2.NORMAL_CLONE)


def ken_burns(image: np.ndarray, *, seconds: float = CLIP_SECONDS, fps: int = CLIP_FPS,
              side: int = CLIP_SIDE) -> list[np.ndarray]:
    """`image` (RGB uint8) as the frames of a short clip: a slow zoom in (1.08 -> 1.18) with a small pan that stays
    inside the photo, and a brightness that rises and falls by 4 %, resized to `side`². Deterministic and pure."""
    h, w = image.shape[:2]
    n = max(2, round(seconds * fps))
    frames = []
    for t in np.linspace(0.0, 1.0, n):
        zoom = side / min(h, w) * (1.08 + 0.10 * t)
        dx, dy = 0.03 * w * np.sin(np.pi * t), 0.02 * h * t  # pan, in source pixels
        cx, cy = w / 2 + dx, h / 2 + dy
        matrix = np.float32([[zoom, 0, side / 2 - zoom * cx], [0, zoom, side / 2 - zoom * cy]])
        frame = cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
        gain = 1.0 + 0.04 * np.sin(2 * np.pi * t)
        frames.append(np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8))
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: int = CLIP_FPS) -> None:
    """RGB frames -> VP9 in MP4 (OpenCV's FFmpeg backend). Raises SystemExit when this OpenCV cannot write it."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"vp09"), fps, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"this OpenCV build cannot write VP9 in MP4 ({path.name})")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fairface", type=Path, default=Path("../shared/data/faces/real/fairface"))
    p.add_argument("--out", type=Path, default=Path("examples"))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in REALS:
        shutil.copyfile(args.fairface / name, args.out / f"real_{name}")
    src, dst = (np.asarray(Image.open(args.fairface / n).convert("RGB")) for n in SWAP)
    mesh = LipCropper()
    src_pts, dst_pts = mesh.landmarks(src), mesh.landmarks(dst)
    if src_pts is None or dst_pts is None:
        raise SystemExit("FaceMesh found no face in one of the swap images")
    fake = face_swap(src, dst, src_pts, dst_pts)
    out = args.out / f"fake_faceswap_{SWAP[0].removesuffix('.jpg')}_on_{SWAP[1].split('_')[1]}"
    Image.fromarray(fake).save(out, quality=92)
    for still, clip in CLIPS.items():
        write_clip(args.out / clip, ken_burns(np.asarray(Image.open(args.out / still).convert("RGB"))))
    (args.out / "README.md").write_text(ATTRIBUTION, encoding="utf-8")
    log.info("wrote %s", sorted(p.name for p in args.out.iterdir()))


if __name__ == "__main__":
    main()
