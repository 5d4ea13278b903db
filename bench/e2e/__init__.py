"""End-to-end benchmark: fastgw against nginx and HAProxy as reverse proxies, in one run.

Every peer is an HTTP reverse proxy started as a command in front of the same upstream and
loaded by wrk with the same small keep-alive GET. The proxy under test is pinned to one CPU,
wrk and the upstream to the other, so the proxy's own CPU time per request can be read from
``/proc/PID/stat`` and compared: on a small box throughput alone cannot separate good proxies.

    python -m bench.e2e --duration 5 --peers nginx,haproxy --rate 10000

Writes ``bench/results/e2e-YYYYMMDD-HHMMSS.{json,md}`` and refreshes ``bench/results/latest.md``.
A peer that cannot start is reported as failed with the reason; the others still run.

The parts, each importing only those before it: ``processes`` (start, wait for, stop a
command; CPU time from /proc), ``scenarios`` (fastgw's config variants and their cost
targets), ``peers`` (the proxies, the upstream, redis-server), ``measurement`` (wrk runs and
the CPU around them), ``report`` (verdicts, Markdown, files) and ``runner`` (the rounds and
the command line).
"""
