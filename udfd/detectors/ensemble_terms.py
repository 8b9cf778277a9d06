"""The terms of an `lse` ensemble stack (udfd.evaluation.stacking, udfd.detectors.ensemble): pure numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def term_matrix(terms: Sequence[Sequence[int]], k: int) -> np.ndarray:
    """(K, J) matrix whose column j averages term j's members (pure). Every term needs a member, every index < K."""
    if not terms:
        raise ValueError("an lse stack needs at least one term")
    g = np.zeros((k, len(terms)))
    for j, term in enumerate(terms):
        if not term or any(not 0 <= int(i) < k for i in term):
            raise ValueError(f"term {j} {list(term)} must name members 0..{k - 1}")
        g[list(map(int, term)), j] = 1.0 / len(term)
    return g
