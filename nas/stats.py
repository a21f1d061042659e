"""Rank correlations and error summaries, in numpy (no SciPy dependency)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _ranks(values: Sequence[float]) -> np.ndarray:
    """Average ranks (ties share the mean of their positions)."""
    x = np.asarray(values, dtype=float)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0
        i = j + 1
    return ranks


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: Pearson correlation of average ranks."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def kendall(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b (accounts for ties); O(n^2), fine for validation-sized samples."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    upper = np.triu_indices(len(x), k=1)
    sx, sy = dx[upper], dy[upper]
    concordance = float(np.sum(sx * sy))
    denominator = np.sqrt(float(np.sum(sx != 0)) * float(np.sum(sy != 0)))
    return concordance / denominator if denominator else float("nan")
