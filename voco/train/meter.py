"""Throughput and memory of training steps: samples/s, LM tokens/s, peak memory; for the log and the metrics.

Tokens are counted where the LM reads them (a forward pre-hook on the decoder), so every pass counts: the
segments' compression pass (<seg> + vision tokens + <voco>), the prompt prefix, the question/answer rows and the
KL teacher's pass; what runs outside a training step (validation) does not.
"""

from __future__ import annotations

import time

import torch


class StepMeter:
    """Counts per step on this process; rates are over the whole process group (counts x world size)."""

    def __init__(self, lm_decoder: torch.nn.Module, world: int = 1):
        self.world = world
        self.tokens = 0
        self._counting = False
        self._hook = lm_decoder.register_forward_pre_hook(self._count, with_kwargs=True)
        self.steps = self.samples = self.step_tokens = 0
        self.seconds = 0.0
        self._start = 0.0

    def _count(self, module, args, kwargs) -> None:
        if not self._counting:
            return
        x = kwargs.get("input_ids")
        if x is None:
            x = kwargs.get("inputs_embeds")
        if x is None and args:
            x = args[0]
        if x is not None:
            self.tokens += int(x.shape[0] * x.shape[1])  # [B, L, ...]

    def start(self) -> None:
        self.tokens = 0
        self._counting = True
        self._start = time.perf_counter()

    def stop(self, samples: int) -> dict:
        """End a step (after the optimizer step); its figures for the history entry."""
        seconds = time.perf_counter() - self._start
        self._counting = False
        self.steps += 1
        self.samples += samples
        self.step_tokens += self.tokens
        self.seconds += seconds
        return {"step_s": round(seconds, 4), "tokens": self.tokens * self.world}

    def summary(self, peak_mb: float, memory_kind: str) -> dict:
        """Rates over every step metered so far (whole process group), and the peak memory of this process."""
        s = max(self.seconds, 1e-9)
        return {"steps": self.steps, "samples_per_s": round(self.samples * self.world / s, 3),
                "tokens_per_s": round(self.step_tokens * self.world / s, 1), "step_s": round(s / max(self.steps, 1), 4),
                "peak_memory_mb": round(peak_mb, 1), "memory": memory_kind, "processes": self.world}

    def close(self) -> None:
        self._hook.remove()
