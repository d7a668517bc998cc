"""Trends over the benchmark tables: each series' history (one point per result), its change
points, anomalies and forecast; two sets of runs compared; flaky tests by hardware and
worker. Run by the projector on its reader cursor (``dtf.q.trends``); the statistics are
in stats.py. Filters are parameters, never SQL text."""

from __future__ import annotations

from typing import Annotated, Literal

import duckdb
import numpy as np
from msgspec import Meta, Struct

from dtf_core.replies import ResultsQuery
from projections.flaky import FlakyByHardware, flaky_by_hardware
from projections.results import FILTERS, filter_params
from projections.stats import (
    Anomaly,
    ChangePoint,
    Comparison,
    Forecast,
    anomalies,
    change_points,
    compare,
    forecast,
)

Metric = Literal["wall_s", "throughput", "peak_rss_mb"]
WORSE_WHEN_HIGHER = {"wall_s": True, "throughput": False, "peak_rss_mb": True}
KEY = ("name", "model", "workload", "precision", "batch_size", "hardware_type", "fingerprint")
DAY = 86400.0


class TrendQuery(Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    filters: ResultsQuery = ResultsQuery()
    metric: Metric = "wall_s"
    horizon_days: float = 30.0  # how far the forecast looks ahead
    budget: float = 0.10  # a forecast past (1 + budget) x the segment's median is flagged
    baseline: list[str] = []  # run ids: compared against ``candidate``
    candidate: list[str] = []
    # Or: the results at this commit (a prefix) against the ``history`` results of other
    # commits before them, per series (what `dtf ci` puts in its PR comment).
    candidate_commit: Annotated[str, Meta(pattern=r"^[0-9a-fA-F]{4,64}$")] | None = None
    history: Annotated[int, Meta(ge=2, le=1000)] = 10
    max_points: Annotated[int, Meta(ge=2, le=5000)] = 200  # per series, for charts (the
    # analysis uses every point)
    max_series: Annotated[int, Meta(ge=1, le=1000)] = 50
    flaky_days: float = 7.0


class Series(Struct, kw_only=True):
    key: dict[str, str | int | None]
    n: int
    last: float
    median: float
    change_points: list[ChangePoint]
    change_times: list[float]
    anomalies: list[Anomaly]
    anomaly_times: list[float]
    forecast: Forecast | None
    t: list[float]  # Unix times, thinned to max_points for charts
    values: list[float]
    alarm: bool  # a change point for the worse, or a forecast past the budget


class KeyedComparison(Struct, kw_only=True):
    key: dict[str, str | int | None]
    unit: str  # "results" (each result's mean) or "iterations" (pooled samples)
    comparison: Comparison


class TrendReport(Struct, kw_only=True):
    ok: bool
    metric: str = "wall_s"
    worse_when_higher: bool = True
    series: list[Series] = []
    series_total: int = 0
    alarms_total: int = 0
    comparisons: list[KeyedComparison] = []
    flaky: list[FlakyByHardware] = []
    error: str = ""
    retryable: bool = False  # refused for now (the projection catching up): ask again


_KEY_SQL = ("hash(r.name, r.model, r.workload, r.precision, m.batch_size, r.hardware_type, "
            "r.fingerprint)")
_FROM = """
FROM bench_results r JOIN bench_metrics m ON m.seq = r.seq AND m.name = r.name
     AND m.metric = $metric
WHERE r.success AND NOT isnan(m.mean)""" + FILTERS
# Numbers only (strings cost most to fetch): a series is its key's hash; the keys' text
# comes from a second, grouped query.
_POINTS = ("SELECT " + _KEY_SQL + " AS k, epoch(r.timestamp) AS t, m.mean AS v" + _FROM
           + " ORDER BY k, t, r.seq")
_POINTS_COMPARED = ("SELECT " + _KEY_SQL + " AS k, epoch(r.timestamp) AS t, m.mean AS v,"
                    " r.run_id, m.samples, coalesce(r.commit, '') AS commit" + _FROM
                    + " ORDER BY k, t, r.seq")
_KEYS = ("SELECT " + _KEY_SQL + " AS k, any_value(r.name), any_value(r.model),"
         " any_value(r.workload), any_value(r.precision), any_value(m.batch_size),"
         " any_value(r.hardware_type), any_value(r.fingerprint)" + _FROM + " GROUP BY k")


def _params(q: TrendQuery) -> dict[str, object]:
    return {"metric": q.metric, **filter_params(q.filters)}


def _thin(n: int, limit: int) -> np.ndarray:
    return np.arange(n) if n <= limit else np.linspace(0, n - 1, limit).round().astype(int)


def analyse_series(key: dict[str, str | int | None], t: np.ndarray, v: np.ndarray,
                   q: TrendQuery) -> Series:
    worse_high = WORSE_WHEN_HIGHER[q.metric]
    cps = change_points(v)
    breaks = [c.index for c in cps]
    start = breaks[-1] if breaks else 0
    base = float(np.median(v[start:]))
    threshold = base * (1 + q.budget) if worse_high else base * (1 - q.budget)
    fc = forecast(t[start:] / DAY, v[start:], q.horizon_days, threshold=threshold,
                  worse_when_higher=worse_high)
    if fc is not None:  # back to Unix seconds
        fc = Forecast(at=fc.at * DAY, value=fc.value, low=fc.low, high=fc.high,
                      slope=fc.slope, p_value=fc.p_value, threshold=fc.threshold,
                      crosses=fc.crosses)
    worse = any((c.change > 0) == worse_high for c in cps)
    idx = _thin(v.size, q.max_points)
    odd = anomalies(v, breaks)
    return Series(key=key, n=int(v.size), last=float(v[-1]), median=float(np.median(v)),
                  change_points=cps, change_times=[float(t[i]) for i in breaks],
                  anomalies=odd, anomaly_times=[float(t[a.index]) for a in odd], forecast=fc,
                  t=[float(x) for x in t[idx]], values=[float(x) for x in v[idx]],
                  alarm=worse or bool(fc and fc.crosses))


def trends(con: duckdb.DuckDBPyConnection, q: TrendQuery, now: float) -> TrendReport:
    params = _params(q)
    comparing = bool(q.baseline and q.candidate) or q.candidate_commit is not None
    data = con.execute(_POINTS_COMPARED if comparing else _POINTS, params).fetchnumpy()
    names = {int(row[0]): dict(zip(KEY, (_plain(v) for v in row[1:]), strict=True))
            for row in con.execute(_KEYS, params).fetchall()}
    sid = np.asarray(data["k"], dtype=np.uint64)
    t = np.asarray(data["t"], dtype=np.float64)
    v = np.asarray(data["v"], dtype=np.float64)
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]]) if sid.size else np.array([], int)
    ends = np.r_[starts[1:], sid.size].astype(int) if sid.size else np.array([], int)
    series, comparisons_in, keys = [], [], []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        key = names[int(sid[a])]
        series.append(analyse_series(key, t[a:b], v[a:b], q))
        if comparing:
            pair = _pair(data, a, b, q)
            if pair is not None:
                comparisons_in.append(pair)
                keys.append(key)
    compared = compare([(x, y) for _, x, y in comparisons_in],
                       worse_when_higher=WORSE_WHEN_HIGHER[q.metric])
    report = TrendReport(ok=True, metric=q.metric, worse_when_higher=WORSE_WHEN_HIGHER[q.metric],
                         series_total=len(series), alarms_total=sum(s.alarm for s in series))
    # alarms first, then the biggest change: a report reads top down
    series.sort(key=lambda s: (not s.alarm, -max([abs(c.change) for c in s.change_points],
                                                 default=0.0), _order(s.key)))
    report.series = series[: q.max_series]
    report.comparisons = sorted(
        (KeyedComparison(key=k, unit=unit, comparison=c)
         for k, (unit, _, _), c in zip(keys, comparisons_in, compared, strict=True)),
        key=lambda kc: (kc.comparison.verdict != "regression", -abs(kc.comparison.change)))
    report.flaky = flaky_by_hardware(con, now - q.flaky_days * DAY)
    return report


def _pair(data: dict[str, np.ndarray], a: int, b: int,
          q: TrendQuery) -> tuple[str, np.ndarray, np.ndarray] | None:
    """Baseline and candidate values of one series: each result's mean when both sides
    have five results or more, else the iterations' samples pooled (wall_s only)."""
    if q.candidate_commit is not None:
        prefix = q.candidate_commit.lower()
        cand = np.array([str(c).lower().startswith(prefix) for c in data["commit"][a:b]],
                        dtype=bool)
        if not cand.any():
            return None
        before = np.flatnonzero(~cand[: int(np.argmax(cand))])[-q.history:]
        base = np.zeros(b - a, dtype=bool)
        base[before] = True
    else:
        runs = data["run_id"][a:b]
        base = np.isin(runs, q.baseline)
        cand = np.isin(runs, q.candidate)
    if not base.any() or not cand.any():
        return None
    v = np.asarray(data["v"][a:b], dtype=np.float64)
    if min(base.sum(), cand.sum()) >= 5 or q.metric != "wall_s":
        return "results", v[base], v[cand]
    samples = data["samples"][a:b]
    pooled = [np.concatenate([np.asarray(s, dtype=np.float64) for s in samples[m]
                              if s is not None] or [np.empty(0)]) for m in (base, cand)]
    if min(p.size for p in pooled) < 2:
        return "results", v[base], v[cand]
    return "iterations", pooled[0], pooled[1]


def _order(key: dict[str, str | int | None]) -> tuple[str, ...]:
    """Ties in a report's order are broken by the series' key, never by chance."""
    return tuple("" if key.get(k) is None else f"{key[k]:>12}" if isinstance(key[k], int)
                 else str(key[k]) for k in KEY)


def _plain(value: object) -> str | int | None:
    if value is None or value is np.ma.masked:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, np.integer | int):
        return int(value)
    return str(value)
