"""Accuracy with a 95% Wilson interval, and McNemar's exact test for paired base/tuned results;
for sampled scores (a per-problem share of k samples): the unbiased pass@k estimator, a mean's
95% interval, and a paired permutation test."""

from __future__ import annotations

import math
import random
import statistics
from typing import Sequence

Z95 = 1.959963984540054
# Distinct sums up to which the permutation test's null distribution is built exactly (shares of
# k samples take few values, so their sums stay few); past it, a seeded Monte Carlo sample.
EXACT_SUMS = 200_000
PERMUTATION_RESAMPLES = 20_000


def wilson_interval(correct: int, total: int, z: float = Z95) -> tuple[float, float]:
    if total == 0:
        return (0.0, 1.0)
    p = correct / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> dict[str, float]:
    """Two-sided exact McNemar test on paired outcomes: only problems where a and b disagree count."""
    if len(a) != len(b):
        raise ValueError("paired results must cover the same problems")
    only_a = sum(1 for x, y in zip(a, b) if x and not y)
    only_b = sum(1 for x, y in zip(a, b) if y and not x)
    n = only_a + only_b
    if n == 0:
        return {"only_first_correct": 0, "only_second_correct": 0, "p_value": 1.0}
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return {"only_first_correct": only_a, "only_second_correct": only_b, "p_value": min(1.0, 2 * tail)}


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k samples drawn without replacement from n, c of them
    correct, is correct: 1 - C(n-c, k) / C(n, k), the unbiased estimator of pass@k (Chen et al.,
    2021), computed as a product so large n does not overflow."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def mean_interval(values: Sequence[float], z: float = Z95) -> tuple[float, float]:
    """95% normal interval of the mean of per-problem scores in [0, 1], clipped to [0, 1]."""
    if len(values) < 2:
        return (0.0, 1.0)
    mean = statistics.fmean(values)
    half = z * statistics.stdev(values) / math.sqrt(len(values))
    return (max(0.0, mean - half), min(1.0, mean + half))


def paired_permutation_test(a: Sequence[float], b: Sequence[float], seed: int = 0) -> dict[str, float]:
    """Two-sided paired permutation test of mean(a) = mean(b): under the null each problem's
    difference a_i - b_i is as likely negated, so the p-value is the share of the 2^m sign
    assignments of the m nonzero differences whose sum is at least as far from zero as the one
    seen. Exact (the sums' distribution built one difference at a time) while it has at most
    EXACT_SUMS distinct sums, as for shares of k samples; else PERMUTATION_RESAMPLES random
    assignments (seeded; the observed one counted, so p > 0)."""
    if len(a) != len(b):
        raise ValueError("paired results must cover the same problems")
    diffs = [x - y for x, y in zip(a, b) if x != y]
    out = {
        "better_first": sum(1 for d in diffs if d > 0),
        "better_second": sum(1 for d in diffs if d < 0),
        "mean_difference": statistics.fmean(x - y for x, y in zip(a, b)) if a else 0.0,
    }
    if not diffs:
        return {**out, "p_value": 1.0, "exact": True}
    observed = abs(sum(diffs)) - 1e-9 * len(diffs)  # a sum equal to the observed one, up to rounding, counts
    sums = _sign_sum_counts(diffs)
    if sums is not None:
        extreme = sum(count for total, count in sums.items() if abs(total) >= observed)
        return {**out, "p_value": extreme / 2 ** len(diffs), "exact": True}
    rng = random.Random(seed)
    extreme = sum(
        1 for _ in range(PERMUTATION_RESAMPLES) if abs(sum(d if rng.random() < 0.5 else -d for d in diffs)) >= observed
    )
    return {**out, "p_value": (extreme + 1) / (PERMUTATION_RESAMPLES + 1), "exact": False}


def _sign_sum_counts(diffs: Sequence[float]) -> dict[float, int] | None:
    """How many of the 2^m sign assignments give each sum of +-d_i (sums rounded to 1e-9, so
    assignments that reach the same sum by different paths merge); None past EXACT_SUMS sums."""
    counts: dict[float, int] = {0.0: 1}
    for d in diffs:
        grown: dict[float, int] = {}
        for total, count in counts.items():
            for signed in (total + d, total - d):
                key = round(signed, 9)
                grown[key] = grown.get(key, 0) + count
        if len(grown) > EXACT_SUMS:
            return None
        counts = grown
    return counts
