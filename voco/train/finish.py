"""The end of a run: `final/` (model, metrics, curves), the test-split evaluation, and the exported checkpoint."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import yaml

from voco.train.card import model_card
from voco.train.config import TrainConfig
from voco.train.datasets import DATASETS, eval_examples
from voco.train.evaluate import blind_baseline, evaluate
from voco.train.state import TrainerState, save_state


def finish(config: TrainConfig, model, state: TrainerState, out: Path, *, log=print,
           throughput: dict | None = None, saveable=lambda m: m) -> dict:
    """Save `final/` (model, metrics, curve), evaluate on the test split, and export if configured.
    saveable(model): what to save (the engine's: FSDP saves a plain copy)."""
    final = out / "final"
    model.eval()
    if any(stage.view == "cache" and stage.training_objective.answers for stage in config.stages):
        model.voco.voco_tuned = True  # it has now been trained to compress into <voco>
    test = eval_examples(config, model, "test", config.data.test_videos)
    started = time.perf_counter()
    result = evaluate(model, test, max_new_tokens=config.eval_max_new_tokens)
    blind = (blind_baseline(test, world=config.data.world_config(), base_seed=config.data.base_seed,
                            questions_per_video=config.data.questions_per_video,
                            train_videos=config.data.blind_videos)
             if DATASETS[config.data.dataset].synthetic_world else {})
    metrics = {
        "test": result,
        "blind_baseline": {k: v for k, v in blind.items() if k != "samples"},
        "test_videos": config.data.test_videos,
        "test_questions": sum(result["count"].values()),
        "validation": state.validation[-1] if state.validation else None,
        "train_seconds": round(state.elapsed_s, 1),
        "eval_seconds": round(time.perf_counter() - started, 1),
        "steps": state.global_step,
        "throughput": throughput or {},
        "evaluation": "open-ended greedy decoding from the VoCo caches, exact match of the one-word answer",
    }
    saved = saveable(model)
    save_state(final, saved, None, state)
    (final / "metrics.json").write_text(json.dumps(metrics, indent=1))
    plot_curves(state, out / "curves.png")
    shutil.copy(out / "curves.png", final / "curves.png")
    msg = " ".join(f"{t}={a:.3f}" for t, a in result["accuracy"].items())
    log(f"test ({metrics['test_questions']} questions): average {result['average']:.3f} | {msg}")
    if config.export_dir:
        export(config, saved, final, Path(config.export_dir), metrics)
        log(f"exported to {config.export_dir}")
    return metrics


def export(config: TrainConfig, model, final: Path, folder: Path, metrics: dict) -> None:
    """A clean checkpoint folder (no trainer state): model, config, metrics, curve, MODEL_CARD.md."""
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    (folder / "train_config.yaml").write_text(
        f"# {config.command}\n" + yaml.safe_dump(config.to_dict(), sort_keys=False))
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=1))
    shutil.copy(final / "curves.png", folder / "curves.png")
    (folder / "MODEL_CARD.md").write_text(model_card(config, model, metrics))


def plot_curves(state: TrainerState, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    steps = [h["step"] for h in state.history]
    losses = [h["loss"] for h in state.history]
    if losses:
        ax1.plot(steps, losses, alpha=0.3, label="loss")
        smooth, acc = [], None
        for v in losses:
            acc = v if acc is None else 0.95 * acc + 0.05 * v
            smooth.append(acc)
        ax1.plot(steps, smooth, label="loss (EMA 0.95)")
    ax1.set_xlabel("step")
    ax1.set_ylabel("answer-token cross-entropy")
    ax1.set_yscale("log")
    ax1.legend()
    if state.validation:
        vsteps = [v["step"] for v in state.validation]
        ax2.plot(vsteps, [v["average"] for v in state.validation], "k-o", label="average", linewidth=2)
        types = sorted({t for v in state.validation for t in v["accuracy"]})
        for t in types:
            ax2.plot(vsteps, [v["accuracy"].get(t, float("nan")) for v in state.validation], alpha=0.6, label=t)
    ax2.set_xlabel("step")
    ax2.set_ylabel("val accuracy (greedy, exact match)")
    ax2.set_ylim(0, 1)
    if state.validation:
        ax2.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
