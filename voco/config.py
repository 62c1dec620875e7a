"""`voco.json`: what a checkpoint needs beyond its transformers config (k, compressor, sampling, prompt)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from voco.compressors import compressor_class
from voco.preprocess import ResizeMode

VOCO_JSON = "voco.json"
PROJECTORS = ("mlp2x_gelu", "linear")


@dataclass
class PromptTemplate:
    """How a question is put around the video caches (LLaVA-1.5 'v1' conversation by default)."""

    system: str = (
        "A chat between a curious human and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the human's questions."
    )
    prefix: str = "{system} USER:"
    """Text before the video caches; tokenised with the tokenizer's special tokens (<bos>)."""
    question: str = "\n{question} ASSISTANT:"
    """Text after the video caches for the first question."""
    followup: str = "USER: {question} ASSISTANT:"
    """Text for each later question of a multi-turn chat."""
    answer_end: str = "</s>"
    """What closes an assistant answer in the history, and a stop string while decoding."""
    segment_label: str | None = None
    """Text after each placed segment's cache saying when the segment starts, a format string with `{start}`
    (`voco.timeline.clock`: "1:15", "1:02:05"), e.g. " {start}"; None: caches follow each other with nothing
    between them (every model before the field existed). Left out of voco.json when None."""

    def __post_init__(self) -> None:
        if "{question}" not in self.question or "{question}" not in self.followup:
            raise ValueError("prompt templates 'question' and 'followup' must contain '{question}'")
        if self.segment_label is not None:
            try:
                ok = "{start}" in self.segment_label and self.segment_label.format(start="0:00") != ""
            except (KeyError, IndexError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"prompt segment_label must be a format string with '{{start}}' and no other "
                                 f"field (e.g. ' {{start}}'), got {self.segment_label!r}")


@dataclass
class VoCoConfig:
    """Settings of a VoCo model, saved as `voco.json` beside the transformers checkpoint."""

    k: int = 1
    """Tokens kept per segment: `<voco>` tokens for `voco`, pooled tokens for `pool`, queries for `qformer` (m = k)."""
    compressor: str = "voco"
    """A compressor name (`voco.compressors`): `voco` (keep the k <voco> tokens), `full` (keep every vision token),
    `pool` (avg-pool + linear), `qformer` (k learned queries outside the LM)."""
    compressor_options: dict = field(default_factory=dict)
    """Options of the compressor's class (`Compressor.options`, e.g. where a pruning compressor prunes); left out
    of voco.json and of the model identity when empty, so checkpoints without options stay byte-identical."""
    projector: str = "mlp2x_gelu"
    """Vision-to-LM projector: LLaVA's `mlp2x_gelu` or a single `linear` layer."""
    frames_per_segment: int = 4
    """Frames sampled uniformly (by timestamp) from each segment."""
    segment_seconds: float = 2.0
    """Length of one segment of video."""
    image_resize: ResizeMode = ResizeMode.STRETCH
    """How a frame becomes the vision tower's square (voco/preprocess.py): `stretch` (the bundled models),
    `pad` (LLaVA-1.5: pad to square with the mean colour), `crop` (CLIP: shortest edge + centre crop)."""
    image_mean: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
    image_std: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
    voco_token: str = "<voco>"
    segment_start_token: str | None = None
    """Token that opens every segment sequence; None means the tokenizer's <bos>."""
    prompt: PromptTemplate = field(default_factory=PromptTemplate)
    voco_tuned: bool = True
    """False for a plain LLaVA checkpoint that has not been trained to compress into <voco> yet."""
    answer_segments: int | None = None
    """The most segments one answer reads (what the model was trained to read); a longer video is answered from
    a subset (retrieved or uniform, `voco.session`). None: as many as fit the context."""

    def __post_init__(self) -> None:
        if isinstance(self.prompt, dict):
            self.prompt = PromptTemplate(**self.prompt)
        try:
            self.image_resize = ResizeMode(self.image_resize)
        except ValueError as err:
            raise ValueError(f"image_resize must be one of {[m.value for m in ResizeMode]}, "
                             f"got {self.image_resize!r}") from err
        self.image_mean = tuple(float(x) for x in self.image_mean)
        self.image_std = tuple(float(x) for x in self.image_std)
        compressor = compressor_class(self.compressor)  # fails with the known names
        compressor.check_options(self.compressor_options)
        if self.projector not in PROJECTORS:
            raise ValueError(f"projector must be one of {PROJECTORS}, got {self.projector!r}")
        if compressor.uses_k and self.k < 1:
            raise ValueError(f"k (tokens kept per segment) must be >= 1, got {self.k}")
        if self.answer_segments is not None and self.answer_segments < 1:
            raise ValueError(f"answer_segments must be >= 1 or null, got {self.answer_segments}")
        if self.frames_per_segment < 1:
            raise ValueError(f"frames_per_segment must be >= 1, got {self.frames_per_segment}")
        if self.segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be > 0, got {self.segment_seconds}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError("image_mean and image_std need three values each, std > 0")
        self.check_segment_label()

    def check_segment_label(self) -> None:
        """Time labels between caches need caches of one length in every layer (a dense compressor)."""
        compressor = compressor_class(self.compressor)
        if self.prompt.segment_label is not None and not compressor.dense_caches:
            from voco.compressors import REGISTRY

            dense = sorted(name for name, cls in REGISTRY.items() if cls.dense_caches)
            raise ValueError(f"prompt.segment_label needs a dense compressor ({', '.join(dense)}): the "
                             f"{self.compressor!r} compressor's caches are ragged; set prompt.segment_label to "
                             "null or use a dense compressor")

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["image_resize"] = self.image_resize.value
        if self.image_resize == ResizeMode.STRETCH:
            # the mode every model had before the field existed: left out, so their voco.json and identity
            # (which hashes this dict) stay byte-identical and their caches stay valid
            del data["image_resize"]
        if not self.compressor_options:  # likewise: the field is newer than most checkpoints
            del data["compressor_options"]
        if self.answer_segments is None:
            del data["answer_segments"]
        if self.prompt.segment_label is None:  # likewise
            del data["prompt"]["segment_label"]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> VoCoConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown {VOCO_JSON} fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    def save(self, folder: str | Path) -> None:
        Path(folder, VOCO_JSON).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> VoCoConfig:
        path = Path(folder, VOCO_JSON)
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError, ValueError) as err:
            raise ValueError(f"{path} is not a valid VoCo config: {err}") from err
