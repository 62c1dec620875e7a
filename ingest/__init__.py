"""The ingest worker: find videos, decode, cut into segments, compress with `voco`, store with `store`.

Command line: `python -m ingest --help`. Python: `ingest.run.ingest_paths(paths, home=..., model=...)`.
"""
