"""Benchmarks (latency, families, fast paths, video). Use the core and evaluation; nothing imports them."""
