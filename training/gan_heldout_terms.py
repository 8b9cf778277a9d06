"""The default ensemble's GAN and diffusion term on the `gan_heldout` split, with and without `spectrum`.

    python training/gan_heldout_terms.py --data ../shared/data/faces --out benchmarks/results/gan_heldout_terms.json

The stylegan LOSO fold holds out every CelebA-HQ and FFHQ photo with the StyleGAN-family fakes; the shipped models
were trained with such photos. `gan_heldout` (`training/loso_spectrum.py`) asks the deployed question instead: with
half of the CelebA-HQ and FFHQ real groups in training, are fakes from two generators never seen
(`celebahq_gan_interfacegan`, `tpdne_stylegan2`) told from the other half? Per seed (each re-draws the split), the
kinds heads of the frozen Lite0 statistics (`effnet_lite0_kinds`' recipe) and of the spectrum statistics
(`spectrum` 1.1's: grid 3) are fitted on its train rows; each term is scored as the ensemble scores it (members
standardised on the validation reals, `udfd.evaluation.stacking.fit_lse`). AUC overall, per held-out generator and
per real source. Every held-out row is scored: the term needs no `sbi_lite0` score. Cached features as
`loso_frozen.py` and `loso_spectrum.py` cache them (minutes on a fresh checkout).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # runnable as a script from any folder

from training.data import list_samples  # noqa: E402
from training.kinds import fit_kinds, load_kinds, row_kinds  # noqa: E402
from training.loso_spectrum import GAN_HELDOUT_FAKES, HQ_REALS, gan_heldout_split, native_spectra  # noqa: E402
from udfd.evaluation.stacking import auc, fit_lse  # noqa: E402

log = logging.getLogger(__name__)

# the first term of ensemble 1.6 and of 1.4, and spectrum alone: columns of (lite0, spectrum) log-odds
TERMS: dict[str, list[list[int]]] = {"lite0+spectrum (1.6)": [[0, 1]], "lite0 (1.4)": [[0]], "spectrum": [[1]]}


def term_aucs(d: np.ndarray, y: np.ndarray, sources: list[str], split: dict[str, list[int]]) -> dict[str, object]:
    """AUC of every TERMS entry on the held-out rows, overall, per held-out fake source against all held-out reals and
    per held-out real source against all held-out fakes (pure; `d`: (N, 2) member log-odds)."""
    val, held = split["val"], np.asarray(split["heldout"])
    yh, src = y[held], np.array([sources[i] for i in held])
    fake = yh == 1
    out: dict[str, object] = {"n_reals": int((~fake).sum()), "n_fakes": int(fake.sum())}
    for name, terms in TERMS.items():
        s = fit_lse(d[val], y[val], terms).score(d[held])
        row = {"all": auc(yh, s)}
        row |= {f"{f} vs all reals": auc(yh[~fake | (src == f)], s[~fake | (src == f)]) for f in sorted(set(src[fake]))}
        row |= {f"all fakes vs {r}": auc(yh[fake | (src == r)], s[fake | (src == r)]) for r in sorted(set(src[~fake]))}
        out[name] = row
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--fake-kinds", type=Path, default=Path("training/configs/fake_kinds.json"))
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/udfd"))
    p.add_argument("--seeds", default="42,43,44")
    p.add_argument("--out", type=Path, help="JSON of the results per seed")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from training.loso_frozen import frozen_features

    root = args.data.resolve()
    samples = list_samples(root)
    y = np.array([s.label for s in samples])
    sources = [s.source for s in samples]
    kinds = row_kinds(y, sources, load_kinds(args.fake_kinds))
    spec = native_spectra(root, samples, args.cache_dir, grid=3)
    lite0, *_ = frozen_features(root, samples, stages=[4], cache_dir=args.cache_dir)
    results = {}
    for seed in (int(s) for s in args.seeds.split(",")):
        split = gan_heldout_split(samples, seed=seed)
        heads = [fit_kinds(x, y, kinds, split["train"], split["val"]) for x in (lite0, spec)]
        d = np.stack([h.logit(x, ("gan", "diffusion")) for h, x in zip(heads, (lite0, spec), strict=True)], 1)
        results[str(seed)] = term_aucs(d, y, sources, split)
        log.info("seed %d: %s", seed, json.dumps(results[str(seed)]))
    report = {"command": "python training/gan_heldout_terms.py --data ../shared/data/faces --out "
                         "benchmarks/results/gan_heldout_terms.json",
              "held_out_fakes": list(GAN_HELDOUT_FAKES), "held_out_reals": f"half of the groups of {list(HQ_REALS)}",
              "seeds": results}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
