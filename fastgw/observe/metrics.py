"""Prometheus exposition of the core's counters, summed over workers.

Each worker's engine hands out a snapshot (plain lists and dicts, see
`Engine.metrics_snapshot`); `merge` adds snapshots up and `render` formats the sum with
prometheus_client. Nothing here runs per request: only per scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from fastgw import _core

__all__ = ["CONTENT_TYPE", "empty_snapshot", "merge", "render"]

# The Prometheus text format, version 0.0.4 (what generate_latest writes).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BOUNDS: tuple[float, ...] = _core.HISTOGRAM_BOUNDS


def empty_snapshot() -> dict[str, Any]:
    return {
        "requests": [],
        "ratelimit": [],
        "duration": {},
        "upstream_duration": {},
        "bytes": {"in": 0, "out": 0},
        "connections": {"reading": 0, "active": 0, "idle": 0, "tunnel": 0},
        "targets": [],
        "access_log": {"lines": 0, "sampled_out": 0},
        "proxy_protocol": {"refused": 0, "invalid": 0},
        "internal_errors": dict.fromkeys(_core.INTERNAL_ERROR_WHERE, 0),
    }


def _add_histograms(into: dict[str, list[float]], other: dict[str, list[float]]) -> None:
    for name, values in other.items():
        mine = into.get(name)
        if mine is None:
            into[name] = list(values)
        else:
            into[name] = [a + b for a, b in zip(mine, values, strict=True)]


def merge(snapshots: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The sum of worker snapshots; a target is healthy only if every worker says so."""
    total = empty_snapshot()
    requests: dict[tuple[str, str, int], int] = {}
    decisions: dict[tuple[str, str], int] = {}
    targets: dict[tuple[str, str], list[Any]] = {}
    for snap in snapshots:
        for route, method, status, count in snap.get("requests", ()):
            key = (route, method, status)
            requests[key] = requests.get(key, 0) + count
        for route, result, count in snap.get("ratelimit", ()):
            decisions[(route, result)] = decisions.get((route, result), 0) + count
        _add_histograms(total["duration"], snap.get("duration", {}))
        _add_histograms(total["upstream_duration"], snap.get("upstream_duration", {}))
        for direction in ("in", "out"):
            total["bytes"][direction] += snap.get("bytes", {}).get(direction, 0)
        for state, count in snap.get("connections", {}).items():
            total["connections"][state] = total["connections"].get(state, 0) + count
        for upstream, target, healthy, idle, active in snap.get("targets", ()):
            row = targets.setdefault((upstream, target), [upstream, target, True, 0, 0])
            row[2] = row[2] and healthy
            row[3] += idle
            row[4] += active
        for key in ("lines", "sampled_out"):
            total["access_log"][key] += snap.get("access_log", {}).get(key, 0)
        for key in ("refused", "invalid"):
            total["proxy_protocol"][key] += snap.get("proxy_protocol", {}).get(key, 0)
        for where, count in snap.get("internal_errors", {}).items():
            total["internal_errors"][where] = total["internal_errors"].get(where, 0) + count
    total["requests"] = [[*key, count] for key, count in sorted(requests.items())]
    total["ratelimit"] = [[*key, count] for key, count in sorted(decisions.items())]
    total["targets"] = sorted(targets.values())
    return total


def _histogram(name: str, doc: str, label: str, data: dict[str, list[float]]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for value, row in sorted(data.items()):
        counts, total_seconds = row[:-1], row[-1]
        buckets = []
        running = 0.0
        for bound, count in zip(BOUNDS, counts, strict=False):
            running += count
            buckets.append((repr(bound), running))
        running += counts[-1]
        buckets.append(("+Inf", running))
        family.add_metric([value], buckets, sum_value=total_seconds)
    return family


class _SnapshotCollector:
    def __init__(self, snapshot: dict[str, Any], extra: dict[str, Any]) -> None:
        self.snapshot = snapshot
        self.extra = extra

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        requests = CounterMetricFamily(
            "fastgw_http_requests",
            "Requests answered, by route (empty: no route matched), method and status.",
            labels=["route", "method", "status"],
        )
        for route, method, status, count in snap["requests"]:
            requests.add_metric([route, method, str(status)], count)
        yield requests
        decisions = CounterMetricFamily(
            "fastgw_ratelimit_decisions",
            "Rate limit decisions by route and result (allowed, limited).",
            labels=["route", "result"],
        )
        for route, result, count in snap["ratelimit"]:
            decisions.add_metric([route, result], count)
        yield decisions
        yield _histogram(
            "fastgw_http_request_duration_seconds",
            "Time from the request head to the end of the response, by route.",
            "route",
            snap["duration"],
        )
        yield _histogram(
            "fastgw_upstream_request_duration_seconds",
            "Time from sending the request upstream to the end of its response.",
            "upstream",
            snap["upstream_duration"],
        )
        healthy = GaugeMetricFamily(
            "fastgw_upstream_target_healthy",
            "1 unless the last connection attempt to the target failed (passive check).",
            labels=["upstream", "target"],
        )
        upstream_connections = GaugeMetricFamily(
            "fastgw_upstream_connections",
            "Open connections to upstream targets, idle (pooled) or active.",
            labels=["upstream", "target", "state"],
        )
        for upstream, target, ok, idle, active in snap["targets"]:
            healthy.add_metric([upstream, target], 1.0 if ok else 0.0)
            upstream_connections.add_metric([upstream, target, "idle"], idle)
            upstream_connections.add_metric([upstream, target, "active"], active)
        yield healthy
        yield upstream_connections
        connections = GaugeMetricFamily(
            "fastgw_connections",
            "Open client connections by state.",
            labels=["state"],
        )
        for state, count in sorted(snap["connections"].items()):
            connections.add_metric([state], count)
        yield connections
        traffic = CounterMetricFamily(
            "fastgw_bytes",
            "Bytes received from and sent to clients.",
            labels=["direction"],
        )
        traffic.add_metric(["in"], snap["bytes"]["in"])
        traffic.add_metric(["out"], snap["bytes"]["out"])
        yield traffic
        lines = CounterMetricFamily(
            "fastgw_access_log_lines", "Access log lines written (after sampling)."
        )
        lines.add_metric([], snap["access_log"]["lines"])
        yield lines
        proxy = CounterMetricFamily(
            "fastgw_proxy_protocol_rejected",
            "Connections closed over their PROXY protocol header: refused (sent by a peer "
            "not in trusted_proxies) or invalid (missing, malformed or late).",
            labels=["reason"],
        )
        for reason in ("refused", "invalid"):
            proxy.add_metric([reason], snap["proxy_protocol"][reason])
        yield proxy
        internal = CounterMetricFamily(
            "fastgw_internal_errors",
            "Unexpected exceptions inside the core (bugs), by where they were caught: each "
            "is in the error log with its traceback, up to a rate limit.",
            labels=["where"],
        )
        for where, count in sorted(snap["internal_errors"].items()):
            internal.add_metric([where], count)
        yield internal
        reloads = CounterMetricFamily(
            "fastgw_config_reloads",
            "Configuration reloads by result (ok, error).",
            labels=["result"],
        )
        for result in ("ok", "error"):
            reloads.add_metric([result], self.extra.get("reloads", {}).get(result, 0))
        yield reloads
        workers = GaugeMetricFamily("fastgw_workers", "Worker processes serving.")
        workers.add_metric([], self.extra.get("workers", 1))
        yield workers
        restarts = CounterMetricFamily(
            "fastgw_worker_restarts", "Worker processes restarted after they died."
        )
        restarts.add_metric([], self.extra.get("worker_restarts", 0))
        yield restarts
        worker_up = self.extra.get("worker_up")
        if worker_up is not None:
            up = GaugeMetricFamily(
                "fastgw_worker_up",
                "1 if the worker answered this scrape; 0 if it did not (its counters then "
                "stand as last read) or is starting or being replaced.",
                labels=["worker"],
            )
            for index, value in sorted(worker_up.items()):
                up.add_metric([str(index)], value)
            yield up
            errors = CounterMetricFamily(
                "fastgw_worker_scrape_errors",
                "Scrapes a worker did not answer (timeout or broken control socket).",
                labels=["worker"],
            )
            for index, value in sorted(self.extra.get("worker_scrape_errors", {}).items()):
                errors.add_metric([str(index)], value)
            yield errors


def render(snapshot: dict[str, Any], **extra: Any) -> bytes:
    """The Prometheus text exposition of a (merged) snapshot.

    `extra`: reloads={"ok": n, "error": n}, workers=n, worker_restarts=n; with a supervisor
    also worker_up={index: 0 or 1} and worker_scrape_errors={index: n}.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot, extra))  # type: ignore[arg-type]
    return generate_latest(registry)
