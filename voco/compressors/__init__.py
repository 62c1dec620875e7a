"""Compressors behind one protocol (`voco.compressors.base`); a config name resolves to a class.

    voco, full, pool, pool_frames   voco/compressors/dense.py
    qformer                         voco/compressors/qformer.py
    atp, atp+voco                   voco/compressors/atp/ (compressor, pruning, ragged answering, reference)

A new compressor: a `Compressor` subclass with a `name`, decorated with `@register`, in a module added to
`MODULES` (imported on first lookup).
"""

from __future__ import annotations

from voco.compressors.base import (
    MODULES,
    REGISTRY,
    WEIGHTS_FILE,
    Compressed,
    Compressor,
    LinearProjector,
    SegmentLayout,
    compressor_class,
    load_builtin,
    module_names,
    register,
)


def make_compressor(voco, text_config) -> Compressor:
    """The compressor a `VoCoConfig` names, with a fresh module (if it has one) for the LM of `text_config`."""
    return compressor_class(voco.compressor).for_model(voco.k, text_config, voco.compressor_options)


__all__ = ["MODULES", "REGISTRY", "WEIGHTS_FILE", "Compressed", "Compressor", "LinearProjector", "SegmentLayout",
           "compressor_class", "load_builtin", "make_compressor", "module_names", "register"]
