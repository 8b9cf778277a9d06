"""What the app's process imports: packages the default request path never needs stay out of its memory at rest.

README "Memory and cold start": the server with the default detector set holds about 1 GB at rest; scikit-learn and
SciPy (behind pytorch-grad-cam, only for the EigenCAM / FullGrad heat-maps), Triton and PyArrow would add ~180 MB.
Each check runs in a fresh interpreter, since this test process has long imported them all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from udfd.config import PROJECT_ROOT

# Imported only when a visitor asks for a non-default method (EigenCAM, FullGrad) or by other commands.
LAZY = ("sklearn", "scipy", "pytorch_grad_cam")

_BUILD = """
import json, os, sys
from udfd.config import PROJECT_ROOT, Settings
from udfd.hub import with_members
base = Settings.from_env()
default_set = with_members({*base.detectors, *base.video_detectors}, base.models)  # ensembles load their members
for name in base.models:  # only the default set loads, as `benchmarks/memory_requests.py --default-set-only`
    if name not in default_set:
        os.environ[f"UDFD_MODEL_{name.upper()}"] = "local-dir:/nonexistent"
import app
settings = Settings.from_env()
demo = app.build_app(settings)  # loads the default detectors and analyses the examples (reports with heat-maps)
answer = app.analyze(str(PROJECT_ROOT / "examples" / "real_fairface_0098.jpg"), settings)  # one default request
report = open(answer[-1], encoding="utf-8").read()
print(json.dumps({"loaded": [m for m in sys.argv[1:] if m in sys.modules], "heatmap": "Heat-maps: Grad-CAM" in report}))
"""

_MAIN = """
import json, runpy, sys
names, sys.argv = sys.argv[1:], ["app.py", "--help"]
try:
    runpy.run_path("app.py", run_name="__main__")  # the server's start, up to parsing its arguments
except SystemExit:
    pass
print(json.dumps({m: "absent" if m not in sys.modules else "kept out" if sys.modules[m] is None else "imported"
                  for m in names}))
"""


def _run(code: str, *args: str, env: dict[str, str] | None = None, timeout: int = 300) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=PROJECT_ROOT, capture_output=True, text=True,
                         timeout=timeout, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_building_the_app_and_a_default_request_do_not_import_the_lazy_packages(tmp_path) -> None:
    # An empty ONNX cache: the export on a first start must not pull them in either.
    got = _run(_BUILD, *LAZY, env={"UDFD_CACHE_DIR": str(tmp_path), "OMP_NUM_THREADS": "1"})
    assert got["heatmap"], "the default request's report has no Grad-CAM heat-map: the check below proves nothing"
    assert got["loaded"] == [], (
        f"{', '.join(got['loaded'])} imported while building the app or serving a default request: "
        "about 70 MB more at rest (README 'Memory and cold start'). Import it inside the function that needs it "
        "(udfd/explain.py imports pytorch-grad-cam only for EigenCAM and FullGrad).")


def test_the_server_keeps_out_the_packages_it_never_uses() -> None:
    got = _run(_MAIN, "triton", "pyarrow", *LAZY)
    assert got["triton"] == got["pyarrow"] == "kept out", (
        f"app.py run as the server should keep Triton and PyArrow out (UNUSED_PACKAGES) before Gradio is imported: "
        f"{got}")
    assert all(got[m] == "absent" for m in LAZY), f"imported at the server's start: {got}"
