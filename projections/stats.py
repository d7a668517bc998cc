"""The statistics behind `dtf trends` and `dtf report`. Pure: arrays in, findings out.

The tests are scipy's (Mann-Whitney U, linear regression, Student's t, Benjamini-Hochberg);
what is ours is where they are applied, documented in docs/analytics.md:

- change points: binary segmentation; each split is the argmax of a rank CUSUM, kept
  only when a Mann-Whitney U test between the two sides, Bonferroni-corrected for the
  splits searched, is below ``alpha`` and the medians differ by ``min_effect``;
- anomalies: points far from their segment's median in robust z (MAD) units;
- forecast: a least-squares line over the last segment, with a prediction interval;
- comparison of two sets of runs: Mann-Whitney U per series, Cliff's delta and the
  relative change of the median as effect sizes, Benjamini-Hochberg across series.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from msgspec import Struct
from scipy import stats as sps

ALPHA = 0.01  # change points: per segment, after the correction for the splits searched
MIN_SIZE = 5  # points on each side of a change point
MIN_EFFECT = 0.02  # relative change of the median below which nothing is reported
ANOMALY_Z = 5.0  # robust z beyond which a single point is an anomaly
MAD_SCALE = 1.4826  # MAD to standard deviation, for normal noise
# A split whose approximate z is below this fraction of the z it must reach is not tested
# (a speed-up only: the Mann-Whitney test decides every split that is tested).
SCREEN = 0.7


class ChangePoint(Struct, frozen=True, kw_only=True):
    index: int  # the first point after the change
    before: float  # median of the segment before
    after: float  # median of the segment after
    change: float  # after / before - 1
    p_value: float  # corrected for the splits searched


class Anomaly(Struct, frozen=True, kw_only=True):
    index: int
    value: float
    z: float  # robust z within its segment


class Forecast(Struct, frozen=True, kw_only=True):
    at: float  # the time forecast (same unit as the series' times)
    value: float
    low: float
    high: float
    slope: float  # per unit of time
    p_value: float  # of the slope
    threshold: float | None = None
    crosses: bool = False  # the interval's worse side is past the threshold


class Comparison(Struct, frozen=True, kw_only=True):
    baseline_median: float
    candidate_median: float
    change: float  # candidate / baseline - 1
    cliffs_delta: float  # P(candidate > baseline) - P(candidate < baseline)
    p_value: float
    q_value: float  # Benjamini-Hochberg across the series compared
    n_baseline: int
    n_candidate: int
    verdict: str  # regression, improvement, unchanged


def _rank_cusum_split(x: np.ndarray, min_size: int) -> tuple[int, float]:
    """The split (index of the first point after it) that best separates the ranks, and
    its statistic in standard deviations: the normal approximation of the Mann-Whitney z
    at that split (no tie correction)."""
    n = x.size
    r = np.argsort(np.argsort(x, kind="stable"), kind="stable") + 1.0  # ties: rare here
    k = np.arange(1, n)
    left = np.cumsum(r)[:-1]
    stat = np.abs(left / k - (r.sum() - left) / (n - k)) * np.sqrt(k * (n - k) / n)
    stat[: min_size - 1] = -1
    stat[n - min_size:] = -1
    best = int(np.argmax(stat))
    return best + 1, float(stat[best]) / float(np.sqrt((n * n - 1) / 12.0))


def change_points(x: Sequence[float] | np.ndarray, *, alpha: float = ALPHA,
                  min_size: int = MIN_SIZE, min_effect: float = MIN_EFFECT) -> list[ChangePoint]:
    values = np.asarray(x, dtype=np.float64)
    found: list[int] = []
    pending = [(0, values.size)]
    while pending:
        a, b = pending.pop()
        if b - a < 2 * min_size:
            continue
        seg = values[a:b]
        k, z = _rank_cusum_split(seg, min_size)
        searched = seg.size - 2 * min_size + 1
        if z < SCREEN * float(sps.norm.isf(alpha / (2 * searched))):
            continue  # far from significant: the exact test below would say no
        left, right = seg[:k], seg[k:]
        p = min(1.0, float(sps.mannwhitneyu(left, right, alternative="two-sided").pvalue)
                * searched)
        base = float(np.median(left))
        change = float(np.median(right)) / base - 1 if base else 0.0
        if p < alpha and abs(change) >= min_effect:
            found.append(a + k)
            pending += [(a, a + k), (a + k, b)]
    found.sort()
    edges = [0, *found, values.size]
    out = []
    for i, cp in enumerate(found):
        before, after = values[edges[i]:cp], values[cp:edges[i + 2]]
        base = float(np.median(before))
        p = float(sps.mannwhitneyu(before, after, alternative="two-sided").pvalue)
        out.append(ChangePoint(index=cp, before=base, after=float(np.median(after)),
                               change=float(np.median(after)) / base - 1 if base else 0.0,
                               p_value=min(1.0, p * max(1, len(found)))))
    return out


def anomalies(x: Sequence[float] | np.ndarray, breaks: Sequence[int] = (),
              z_limit: float = ANOMALY_Z) -> list[Anomaly]:
    values = np.asarray(x, dtype=np.float64)
    edges = [0, *breaks, values.size]
    out = []
    for a, b in itertools.pairwise(edges):
        seg = values[a:b]
        if seg.size < 2 * MIN_SIZE:
            continue
        med = np.median(seg)
        mad = np.median(np.abs(seg - med)) * MAD_SCALE
        if mad <= 0:
            continue
        z = (seg - med) / mad
        out += [Anomaly(index=a + int(i), value=float(seg[i]), z=float(z[i]))
                for i in np.flatnonzero(np.abs(z) > z_limit)]
    return out


def forecast(t: Sequence[float] | np.ndarray, x: Sequence[float] | np.ndarray, horizon: float,
             *, threshold: float | None = None, worse_when_higher: bool = True,
             confidence: float = 0.95) -> Forecast | None:
    """The line through (t, x) at ``t[-1] + horizon``, with its prediction interval; None
    with fewer than 8 points or no spread in time."""
    tt, xx = np.asarray(t, dtype=np.float64), np.asarray(x, dtype=np.float64)
    n = tt.size
    sxx = float(((tt - tt.mean()) ** 2).sum()) if n else 0.0
    if n < 8 or sxx <= 0:
        return None
    fit = sps.linregress(tt, xx)
    at = float(tt[-1] + horizon)
    value = float(fit.intercept + fit.slope * at)
    resid = xx - (fit.intercept + fit.slope * tt)
    s = float(np.sqrt((resid ** 2).sum() / (n - 2)))
    half = float(sps.t.ppf((1 + confidence) / 2, n - 2)) * s * float(
        np.sqrt(1 + 1 / n + (at - tt.mean()) ** 2 / sxx))
    low, high = value - half, value + half
    crosses = False
    if threshold is not None and fit.pvalue < 1 - confidence:
        crosses = low > threshold if worse_when_higher else high < threshold
    return Forecast(at=at, value=value, low=low, high=high, slope=float(fit.slope),
                    p_value=float(fit.pvalue), threshold=threshold, crosses=crosses)


def compare(pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, alpha: float = 0.05,
            min_effect: float = MIN_EFFECT, worse_when_higher: bool = True) -> list[Comparison]:
    """Baseline against candidate for each series; q-values across all of them."""
    raw = []
    for base, cand in pairs:
        u = sps.mannwhitneyu(cand, base, alternative="two-sided")
        delta = 2 * float(u.statistic) / (cand.size * base.size) - 1
        raw.append((float(np.median(base)), float(np.median(cand)), delta, float(u.pvalue)))
    if not raw:
        return []
    qs = sps.false_discovery_control([r[3] for r in raw])
    out = []
    for (bm, cm, delta, p), q, (base, cand) in zip(raw, qs, pairs, strict=True):
        change = cm / bm - 1 if bm else 0.0
        worse = change > 0 if worse_when_higher else change < 0
        verdict = "unchanged"
        if q < alpha and abs(change) >= min_effect:
            verdict = "regression" if worse else "improvement"
        out.append(Comparison(baseline_median=bm, candidate_median=cm, change=change,
                              cliffs_delta=delta, p_value=p, q_value=float(q),
                              n_baseline=int(base.size), n_candidate=int(cand.size),
                              verdict=verdict))
    return out
