"""ATP (ATP-LLaVA's adaptive token pruning, here as a VoCo compressor): every part in one place.

    compressor.py   the `atp` / `atp+voco` compressors: pass 1 with per-layer pruning, ragged caches
    pruning.py      the pruner: importance from attention, learned per-layer thresholds, spatial sampling
    ragged.py       answering from ragged caches (layers of different lengths) exactly, through key biases
    reference.py    the single-pass reference the two-stage ATP path is tested against
    stats.py        kept-token and time figures of ragged caches (`python -m voco.compressors.atp.stats`)
"""
