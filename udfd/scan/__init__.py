"""Scanning archives: folders, list files and datasets -> one Parquet row per file and per face, resumable.

`core` is engine-independent (records -> rows); `local` (a thread pool) and `ray_engine` (Ray Data actors, an
optional extra) run it; `store` writes the output; `summary` counts what a scan found.
"""
