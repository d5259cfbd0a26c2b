"""Side-by-side benchmarks of the adapter against prometheus-adapter (the peer), in one run.

Numbers are only meaningful as ratios measured on the same machine, against the same Prometheus and
control plane, minutes apart: absolute timings on a shared 2-core box say little. Nothing here is
a test assertion (DESIGN.md §6): ``python -m bench.adapter_bench`` prints a table and writes JSON.
"""
