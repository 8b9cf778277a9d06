"""Face search in group photos (issue 14 item 8) and the MediaPipe cascade (issue 16 part 3).

Grids of real dev faces are built here from ../shared/data/faces/real (never stored in the repo) with the same
builder as benchmarks/face_search.py. Before the tiled second pass, a 6x6 grid of 256 px faces gave 17 faces and a
10x10 grid none at all.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from PIL import Image as PILImage

from udfd.config import FaceSettings, Settings
from udfd.faces import MediaPipeFaceDetector, crop, merge_faces, search_faces, tile_grid
from udfd.types import FaceCrop, FaceSearch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "face_search.py"
FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
needs_data = pytest.mark.skipif(not (FACES / "real").is_dir(), reason=f"dev face data not found at {FACES}")


def _bench():
    spec = importlib.util.spec_from_file_location("face_search", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench():
    return _bench()


@pytest.fixture(scope="module")
def mediapipe() -> MediaPipeFaceDetector:
    detector = MediaPipeFaceDetector()
    yield detector
    detector.close()


def _cells(search: FaceSearch, cell: int) -> set[tuple[int, int]]:
    out = set()
    for face in search.crops:
        if face.face_found:
            x0, y0, x1, y1 = face.box
            out.add((int((y0 + y1) / 2 // cell), int((x0 + x1) / 2 // cell)))
    return out


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# -- group photos of real faces --------------------------------------------------------------------------------
@needs_data
@pytest.mark.parametrize(("n", "cell", "at_least"), [(6, 256, 32), (10, 128, 85)])
def test_a_grid_of_real_faces_is_found_by_the_tiled_pass(bench, mediapipe, n: int, cell: int, at_least: int) -> None:
    pixels = bench.face_grid(bench.grid_sources(FACES), n, cell, seed=0)
    settings = FaceSettings(max_faces=1000)
    one_pass = search_faces(pixels, settings, detector=mediapipe, tiled=False)
    tiled = search_faces(pixels, settings, detector=mediapipe)
    assert one_pass.tiles == 0 and tiled.tiles > 0
    assert len(_cells(one_pass, cell)) < at_least  # the first pass alone misses most of them (17 and 0 here)
    assert len(_cells(tiled, cell)) >= at_least, (len(_cells(tiled, cell)), n * n)
    assert tiled.tiles <= settings.max_tiles
    # no face twice: no two crops (margin included) overlap by more than half
    boxes = [f.box for f in tiled.crops]
    assert max(_iou(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:]) < 0.5


@needs_data
def test_a_group_photo_verdict_says_the_count_was_capped_and_tiled(bench, tiny_settings) -> None:
    from udfd.pipeline import analyze_image

    pixels = bench.face_grid(bench.grid_sources(FACES), 6, 256, seed=0)
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, "PNG")
    verdict = analyze_image(buf.getvalue(), settings=tiny_settings, name="group.png")
    assert len(verdict.faces) == tiny_settings.faces.max_faces == 20
    assert all(f.face_found for f in verdict.faces)
    capped = [n for n in verdict.notes if "largest faces were analysed" in n]
    assert capped and int(capped[0].split()[0]) > 20, verdict.notes  # "N faces were found; only the 20 ..."
    assert any("overlapping tiles" in n for n in verdict.notes), verdict.notes


@needs_data
def test_portraits_get_no_tiled_pass(mediapipe) -> None:
    """A large image with one face (a portrait) is searched once: the tiles would cost much for nothing."""
    path = sorted((FACES / "real" / "ffhq_real").glob("*.jpg"))[0]
    with PILImage.open(path) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert max(pixels.shape[:2]) >= 1000
    search = search_faces(pixels, FaceSettings(), detector=mediapipe)
    assert search.found >= 1 and search.tiles == 0


# -- tiling, merging: pure parts --------------------------------------------------------------------------------
def test_tile_grid_covers_the_image_with_half_overlapping_tiles_within_the_cap() -> None:
    for width, height, cap in [(2560, 2560, 36), (1536, 1536, 36), (4096, 1024, 36), (960, 960, 16), (1280, 720, 9)]:
        tiles = tile_grid(width, height, min_side=384, max_tiles=cap)
        assert 0 < len(tiles) <= cap
        covered = np.zeros((height, width), bool)
        for x0, y0, x1, y1 in tiles:
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            covered[y0:y1, x0:x1] = True
        assert covered.all()
        side = tiles[0][2] - tiles[0][0]
        if len(tiles) > 1:  # neighbours overlap by at least half a tile: a face up to side/2 lies whole in one
            xs = sorted({t[0] for t in tiles})
            assert all(b - a <= side // 2 for a, b in zip(xs, xs[1:], strict=False))


def test_tile_grid_is_empty_when_one_tile_would_see_most_of_the_image() -> None:
    assert tile_grid(500, 400, min_side=384, max_tiles=36) == []
    assert tile_grid(4000, 4000, min_side=384, max_tiles=0) == []


def _face(box: tuple[int, int, int, int], conf: float = 0.9) -> FaceCrop:
    return FaceCrop(np.zeros((box[3] - box[1], box[2] - box[0], 3), np.uint8), box, conf)


def test_merge_faces_drops_duplicates_and_faces_inside_faces_keeps_neighbours() -> None:
    big = _face((100, 100, 200, 200), 0.9)
    same = _face((102, 98, 203, 201), 0.8)  # the same face from another tile
    inside = _face((120, 120, 180, 170), 0.95)  # a part of it, higher score: the bigger box is dropped instead
    neighbour = _face((210, 100, 300, 190), 0.7)
    kept = merge_faces([big, same, inside, neighbour])
    assert [f.box for f in kept] == [neighbour.box, inside.box]
    assert [f.box for f in merge_faces([big, same, neighbour])] == [big.box, neighbour.box]


class GridStub:
    """'Finds' a 40 px face at every multiple of 100 px that lies whole in what it is shown, like a detector that
    only sees faces at a high enough resolution: here only in crops up to 1000 px."""

    def __init__(self, limit: int = 1000) -> None:
        self.limit, self.calls = limit, 0

    def detect(self, pixels: np.ndarray) -> list[FaceCrop]:
        self.calls += 1
        h, w = pixels.shape[:2]
        if max(h, w) > self.limit:
            return []
        origins = np.argwhere(pixels[:, :, 0] == 255)  # face origins are marked by a red pixel
        return [FaceCrop(crop(pixels, (x, y, x + 40, y + 40)), (x, y, x + 40, y + 40), 0.9)
                for y, x in origins.tolist() if x + 40 <= w and y + 40 <= h]


def _marked(width: int, height: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    pixels = np.zeros((height, width, 3), np.uint8)
    origins = {(x, y) for y in range(30, height - 60, 100) for x in range(30, width - 60, 100)}
    for x, y in origins:
        pixels[y, x, 0] = 255
    return pixels, origins


def test_tiles_map_boxes_back_and_drop_faces_cut_at_a_tile_edge() -> None:
    pixels, origins = _marked(2000, 1500)
    stub = GridStub()
    search = search_faces(pixels, FaceSettings(max_faces=10_000, margin=0.0), detector=stub)
    assert search.tiles > 0 and stub.calls == 2 + search.tiles  # first pass, grey-canvas retry, then the tiles
    assert {(f.box[0], f.box[1]) for f in search.crops} == origins  # every face once, in image coordinates
    assert search.found == len(origins)


def test_the_face_cap_keeps_the_largest_and_says_how_many_there_were() -> None:
    pixels, origins = _marked(2000, 1500)
    search = search_faces(pixels, FaceSettings(max_faces=5, margin=0.0), detector=GridStub())
    assert len(search.crops) == 5 and search.found == len(origins) and search.capped


def test_no_tiled_pass_when_turned_off_or_for_a_large_face() -> None:
    pixels, _ = _marked(2000, 1500)
    stub = GridStub()
    assert search_faces(pixels, FaceSettings(max_tiles=0), detector=stub).tiles == 0
    assert search_faces(pixels, FaceSettings(), detector=stub, tiled=False).tiles == 0

    class BigFace:
        calls = 0

        def detect(self, image: np.ndarray) -> list[FaceCrop]:
            self.calls += 1
            return [FaceCrop(crop(image, (500, 300, 1100, 900)), (500, 300, 1100, 900), 0.9)]

    big = BigFace()
    assert search_faces(pixels, FaceSettings(), detector=big).tiles == 0 and big.calls == 1

    class TwoSmallOrOne:
        def __init__(self, n: int) -> None:
            self.n = n

        def detect(self, image: np.ndarray) -> list[FaceCrop]:
            boxes = [(100, 100, 160, 160), (300, 100, 360, 160)][: self.n] if image.shape[1] == 2000 else []
            return [FaceCrop(crop(image, b), b, 0.9) for b in boxes]

    assert search_faces(pixels, FaceSettings(), detector=TwoSmallOrOne(1)).tiles == 0  # one small face: its answer
    assert search_faces(pixels, FaceSettings(), detector=TwoSmallOrOne(2)).tiles > 0  # a group of small faces


def test_max_faces_below_one_is_refused() -> None:
    from udfd.errors import UdfdError

    with pytest.raises(UdfdError, match="UDFD_MAX_FACES"):
        search_faces(np.zeros((64, 64, 3), np.uint8), FaceSettings(max_faces=0), detector=GridStub())


def test_settings_read_max_faces_and_tiles_from_the_environment() -> None:
    settings = Settings.from_env({"UDFD_MAX_FACES": "7", "UDFD_FACE_TILES": "0"})
    assert (settings.faces.max_faces, settings.faces.max_tiles) == (7, 0)
    assert (Settings().faces.max_faces, Settings().faces.max_tiles) == (20, 36)


def test_videos_are_searched_in_one_pass(tiny_settings) -> None:
    from udfd.pipeline import track_video_faces

    pixels, _ = _marked(2000, 1500)
    stub = GridStub()
    frame_faces, _, _ = track_video_faces([pixels], tiny_settings, face_detector=stub)
    assert stub.calls == 2 and not frame_faces[0][0].face_found  # first pass + canvas retry, no tiles


# -- the MediaPipe cascade -----------------------------------------------------------------------------------------
def _calls(detector: MediaPipeFaceDetector, pixels: np.ndarray) -> list[int]:
    seen: list[int] = []
    real = detector._process

    def spy(selection: int, image: np.ndarray):
        seen.append(selection)
        return real(selection, image)

    with mock.patch.object(detector, "_process", side_effect=spy):
        detector.detect(pixels)
    return seen


@needs_data
def test_the_second_graph_runs_only_when_the_first_finds_no_face(mediapipe) -> None:
    path = sorted((FACES / "real" / "lfw").glob("*.jpg"))[0]
    with PILImage.open(path) as im:
        face = np.asarray(im.convert("RGB"))
    assert _calls(mediapipe, face) == [0]  # short-range found it: the full-range graph does not run
    assert _calls(mediapipe, np.full((256, 256, 3), 127, np.uint8)) == [0, 1]  # nothing: both run
    both = MediaPipeFaceDetector(both=True)
    try:
        assert _calls(both, face) == [0, 1]
        assert len(both.detect(face)) >= len(mediapipe.detect(face)) >= 1
    finally:
        both.close()


@needs_data
def test_graphs_run_in_parallel_from_a_bounded_pool() -> None:
    files = sorted((FACES / "real" / "lfw").glob("*.jpg"))[:12]
    images = []
    for p in files:
        with PILImage.open(p) as im:
            images.append(np.asarray(im.convert("RGB")))
    detector = MediaPipeFaceDetector(parallel=2)
    try:
        alone = [[f.box for f in detector.detect(img)] for img in images]
        running, most = 0, 0
        lock = threading.Lock()
        real = detector._new_graph

        def counting(selection: int):
            graph = real(selection)
            process = graph.process

            def tracked(image):
                nonlocal running, most
                with lock:
                    running += 1
                    most = max(most, running)
                try:
                    return process(image)
                finally:
                    with lock:
                        running -= 1

            graph.process = tracked
            return graph

        detector.close()
        with mock.patch.object(detector, "_new_graph", side_effect=counting), ThreadPoolExecutor(4) as pool:
            together = list(pool.map(lambda img: [f.box for f in detector.detect(img)], images * 3))
        assert together == alone * 3  # same answers whatever thread ran them
        assert max(detector._made.values()) <= 2  # never more graphs than `parallel` per model ...
        assert most <= 4  # ... so at most 2 of each model run at once
    finally:
        detector.close()
    assert detector._made == {0: 0, 1: 0}


def test_face_search_capped_property() -> None:
    whole = FaceCrop(np.zeros((4, 4, 3), np.uint8), (0, 0, 4, 4), 0.0, face_found=False)
    assert not FaceSearch((whole,), 0).capped
    assert FaceSearch((dataclasses.replace(whole, face_found=True),) * 2, 5).capped
