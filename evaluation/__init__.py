"""Zero-shot video-QA evaluation (MSVD-QA, MSRVTT-QA, ActivityNet-QA) of VoCo models.

Entry points: `scripts/eval_videoqa.py` and the per-dataset wrappers in `scripts/`; see
evaluation/README.md. Library parts:

- `evaluation.readers`      annotation layouts -> `QAItem`s, video files by name
- `evaluation.answerers`    the `Answerer` protocol; `ModelAnswerer` (voco, in memory), `StoreAnswerer`
- `evaluation.predictions`  resumable JSONL prediction parts, shards, merge
- `evaluation.judges`       `ExactJudge`, the `Judgment` every judge gives
- `evaluation.openai_judge` `OpenAIJudge` (Video-ChatGPT protocol, cached, retried)
- `evaluation.metrics`      accuracy / score per type, failures; JSON and Markdown
- `evaluation.runner`       plan -> predict -> merge -> judge -> metrics

Nothing here imports torch or voco until a model is loaded, so judging and merging stay light.
"""
