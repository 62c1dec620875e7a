"""Search vectors: one per segment (from its cache) and one per text query, through one protocol.

`SegmentEmbedder` is what ingest (vectors stored beside the cache) and search (query vectors) use:

    embedder = make_embedder("voco-keys", model)
    vectors = embedder.segment_vectors(caches)   # float32 [T, dim], from the position-free caches
    query = embedder.query_vector("a red circle")  # float32 [dim]; score = vectors @ query

`VoCoKeyEmbedder` (ReKV-style, works for any VoCo model): a segment is the mean of its kept tokens'
keys at one middle layer, un-rotated to position 0 (heads concatenated); a query is the mean of the
question tokens' attention queries at that layer, computed un-rotated too (query heads averaged per
key/value head), so the score is the attention logit the question would give the segment with RoPE
cancelled. No extra forward pass at ingest: the keys are already in the cache.
`ConceptEvidenceEmbedder` (the default model's: its evidence tower's slots, "brown cat animal", as sentence
embeddings) and `ClassEvidenceEmbedder` (external signal, for models whose vision tower gives class
probabilities, e.g. the assembled `classnames` model): a segment is the probability-weighted mean of sentence
embeddings of its frames' top class names; a query is the sentence embedding of the text
(voco/text_encoders.py). Both read the frames, not the cache (`reads_frames`): ingest computes them from the
batch it compresses.

Which embedder a model uses is `embedder_for(model)`: the first class of `PREFERENCE` whose `supports(model)`
holds (what the model provides: class names and probabilities, or a Llama-style attention), unless a config
names one (`make_embedder(name, model)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch

from voco.cache import SegmentCache
from voco.rope import shift_keys

if TYPE_CHECKING:
    from voco.model import VoCoModel


class SegmentEmbedder(Protocol):
    """Maps segment caches and text queries into one vector space; higher inner product = more relevant."""

    name: str  # identifies the vector space (with the model fingerprint): an index is keyed by both
    dim: int
    reads_frames: bool  # True: segment_vectors needs the segments' frames (else the caches alone serve)
    novelty_weight: float  # w of `video_scores` when ranking one video's segments for a question

    def segment_vectors(self, caches: Sequence[SegmentCache], frames: Sequence | None = None) -> np.ndarray:
        """float32 [T, dim] for T segments (caches, and their uint8 frames [F, H, W, 3] when reads_frames)."""
        ...

    def query_vector(self, text: str) -> np.ndarray: ...


class VoCoKeyEmbedder:
    """The `<voco>` tokens' un-rotated keys at one layer vs the question's un-rotated queries there."""

    reads_frames = False
    novelty_weight = 2.0
    """w in `video_scores` when answering from retrieved segments: chosen on the synthetic needle bench
    (bench/bench_needle_qa.py, all colours and red-only), not on held-out data."""

    @classmethod
    def supports(cls, model: VoCoModel) -> bool:
        return hasattr(model.lm.model.layers[0].self_attn, "q_proj")

    def __init__(self, model: VoCoModel, layer: int | None = None):
        layers = model.lm.config.num_hidden_layers
        # just below the middle, never layer 0 (its <voco> keys come from the token embedding alone: the
        # same for every segment); on the bundled synthetic model layer 1 finds a needle at rank 1, layers 2-3 never
        self.layer = min(layers - 1, max(1, layers // 2 - 1)) if layer is None else layer
        if not 0 <= self.layer < layers:
            raise ValueError(f"search layer {self.layer} is outside the LM's {layers} layers")
        attn = model.lm.model.layers[self.layer].self_attn
        if not hasattr(attn, "q_proj"):
            raise TypeError(f"{type(attn).__name__} has no q_proj: the voco-keys search vector needs a "
                            "Llama-style attention (q_proj); use another embedder")
        self.model = model
        self.kv_heads = model.lm.config.num_key_value_heads
        self.head_dim = getattr(model.lm.config, "head_dim", None) or (
            model.lm.config.hidden_size // model.lm.config.num_attention_heads)
        self.dim = self.kv_heads * self.head_dim
        self.name = f"voco-keys-l{self.layer}"

    def segment_vectors(self, caches: Sequence[SegmentCache], frames: Sequence | None = None) -> np.ndarray:
        """Each segment's mean key at the search layer over the tokens it keeps there, rotated back to position 0
        (dense and ragged caches alike: `layer_keys`). [T, H * D]."""
        if not caches:
            return np.zeros((0, self.dim), np.float32)
        keys, positions = zip(*(c.layer_keys(self.layer) for c in caches), strict=True)
        counts = torch.tensor([len(p) for p in positions])  # [T]
        unrotated = shift_keys(torch.cat(keys).float(), -torch.cat(positions), self.model.inv_freq.cpu())  # [N, H, D]
        owner = torch.repeat_interleave(torch.arange(len(caches)), counts)  # [N]: each token's segment
        sums = torch.zeros(len(caches), self.dim).index_add_(0, owner, unrotated.reshape(len(owner), -1))
        return (sums / counts[:, None]).numpy().astype(np.float32)

    @torch.inference_mode()
    def query_vector(self, text: str) -> np.ndarray:
        """Mean un-rotated attention query of the question's tokens (read as the model reads a question)."""
        prefix_ids, suffix_ids = self.model.prompt_ids(text)
        ids = torch.tensor([prefix_ids + suffix_ids], device=self.model.device)
        captured: list[torch.Tensor] = []
        attn = self.model.lm.model.layers[self.layer].self_attn
        handle = attn.q_proj.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:  # only the layers up to ours matter; the rest run once per query, cheap next to decoding
            self.model.lm.model(input_ids=ids, use_cache=False)
        finally:
            handle.remove()
        q = captured[0][0, len(prefix_ids):].float().cpu()  # [S, Hq * D], q_proj output: not rotated
        q = q.reshape(q.shape[0], self.kv_heads, -1, self.head_dim).mean(dim=2)  # group query heads per kv head
        return q.mean(dim=0).reshape(-1).numpy().astype(np.float32)


class VisionMeanEmbedder:
    """Baseline: mean projected vision embedding of a segment vs mean LM token embedding of the query.

    Needs the frames (not the cache), so it serves measurement (bench/bench_search.py), not ingest.
    """

    name = "vision-mean"
    novelty_weight = 0.0

    def __init__(self, model: VoCoModel):
        self.model = model
        self.dim = model.lm.config.hidden_size

    @torch.inference_mode()
    def frame_vectors(self, segments: Sequence) -> np.ndarray:
        return self.model.vision_embeds(segments).mean(dim=1).float().cpu().numpy()

    @torch.inference_mode()
    def query_vector(self, text: str) -> np.ndarray:
        ids = self.model.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        emb = self.model.lm.get_input_embeddings()(ids.to(self.model.device))[0]
        return emb.mean(dim=0).float().cpu().numpy()


def class_names(model: VoCoModel) -> list[str] | None:
    """The names of the classes the model's vision tower gives probabilities for (an assembled model's
    `assembly.class_names`), or None when its vision tower gives features, not classes."""
    spec = getattr(model, "assembly", None)
    if spec is None:
        return None
    from voco.vision import read_class_names

    return read_class_names(spec.class_names_path())


_NAME_VECTORS: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}  # (encoder, names) -> [C, dim], per process


class ClassEvidenceEmbedder:
    """What the classifier sees, in sentence space: sum over a segment's `top` classes of p_c * text(name_c).

    Segment: the vision tower's class probabilities averaged over the segment's frames, the `top` most likely
    kept and renormalised, weighting the unit sentence embeddings of those class names; then unit length.
    Query: the unit sentence embedding of the text. Score: cosine. `top` = 5 was fixed before any measurement
    (not tuned on the held-out photos of bench/bench_real_search.py).
    """

    reads_frames = True
    novelty_weight = 0.0
    """w in `video_scores`: chosen on class-mixture videos (the model's training world, not the held-out photos;
    bench/bench_class_novelty.py): within-video recall@1 of a scene's segments is 1.0 for w = 0 .. 0.5, 0.77 at
    w = 1 and 0.54 at w = 2. The novelty term corrects the `<voco>` keys' content bias, which a cosine in
    sentence space does not have; on videos of several distinct scenes it favours the unusual one."""

    @classmethod
    def supports(cls, model: VoCoModel) -> bool:
        from voco.vision import EfficientNetLiteTower

        return class_names(model) is not None and isinstance(model.vision_tower, EfficientNetLiteTower)

    def __init__(self, model: VoCoModel, text_encoder: str = "minilm", top: int = 5):
        from voco.text_encoders import make_text_encoder

        names = class_names(model)
        if names is None:
            raise TypeError("the class-evidence search vector needs a model whose vision tower gives class "
                            "probabilities (an assembled model such as 'default'); use 'voco-keys'")
        self.model, self.top = model, min(top, len(names))
        self.encoder = make_text_encoder(text_encoder, model)
        key = (self.encoder.name, tuple(names))
        if key not in _NAME_VECTORS:
            _NAME_VECTORS[key] = self.encoder.encode(names)
        self.name_vectors = torch.from_numpy(_NAME_VECTORS[key])  # [C, dim]
        self.dim = self.encoder.dim
        self.name = f"class-{self.encoder.name}-top{self.top}"

    @torch.inference_mode()
    def class_probabilities(self, frames: Sequence) -> torch.Tensor:
        """uint8 segments [B] x [F, H, W, 3] -> mean class probabilities per segment [B, C]."""
        probs = self.model.vision_features(frames).float()  # [B * F, 1, C]
        C = self.name_vectors.shape[0]
        if probs.dim() != 3 or probs.shape[1:] != (1, C):
            raise TypeError(f"the vision tower gave features {tuple(probs.shape)}, not class probabilities "
                            f"[frames, 1, {C}]: use 'voco-keys'")
        return probs.reshape(len(frames), -1, C).mean(dim=1).cpu()

    def segment_vectors(self, caches: Sequence[SegmentCache], frames: Sequence | None = None,
                        batch_size: int = 32) -> np.ndarray:
        if frames is None:
            raise ValueError("the class-evidence search vector is computed from the segments' frames: pass frames=")
        if not len(frames):
            return np.zeros((0, self.dim), np.float32)
        probs = torch.cat([self.class_probabilities(frames[i:i + batch_size])
                           for i in range(0, len(frames), batch_size)])  # [T, C]
        return self.vectors_from_probabilities(probs)

    def vectors_from_probabilities(self, probs: torch.Tensor) -> np.ndarray:
        """Class probabilities [T, C] -> unit search vectors [T, dim]."""
        p, index = probs.float().topk(self.top, dim=-1)  # [T, top]
        weights = p / p.sum(-1, keepdim=True).clamp(min=1e-12)
        vectors = (weights[..., None] * self.name_vectors[index]).sum(1)  # [T, dim]
        return torch.nn.functional.normalize(vectors, dim=-1).numpy().astype(np.float32)

    def query_vector(self, text: str) -> np.ndarray:
        return self.encoder.encode([text])[0]


class ConceptEvidenceEmbedder:
    """What the evidence tower read, in sentence space: sum over a segment's slots of score * text(slot phrase).

    A slot's phrase is the text the LM reads for it ("brown cat animal", "two people"; `SlotProjector.describe`),
    so a query such as "a vehicle" or "a red car" meets the hypernyms and colours the tower wrote. Segment:
    the score-weighted sum of its frames' phrase embeddings, unit length; query: the unit sentence embedding of
    the text; score: cosine. Phrase embeddings are memoised per process.
    """

    reads_frames = True
    novelty_weight = 0.0
    """As `ClassEvidenceEmbedder`'s: the question score alone ranks a scene's segments."""

    @classmethod
    def supports(cls, model: VoCoModel) -> bool:
        from voco.evidence.tower import EvidenceTower

        return isinstance(model.vision_tower, EvidenceTower)

    def __init__(self, model: VoCoModel, text_encoder: str = "minilm"):
        from voco.text_encoders import make_text_encoder

        if not self.supports(model):
            raise TypeError("the concept-evidence search vector needs a model with the evidence tower (an assembled "
                            "model with `evidence` in its assembly.json, such as 'default'); use 'voco-keys'")
        self.model = model
        self.encoder = make_text_encoder(text_encoder, model)
        self.dim = self.encoder.dim
        self.name = f"concept-{self.encoder.name}"
        self._phrases: dict[str, np.ndarray] = {}

    def phrase_vectors(self, phrases: Sequence[str]) -> np.ndarray:
        new = sorted({p for p in phrases if p not in self._phrases})
        if new:
            self._phrases.update(zip(new, self.encoder.encode(new), strict=True))
        return np.stack([self._phrases[p] for p in phrases]) if phrases else np.zeros((0, self.dim), np.float32)

    def vectors_from_slots(self, slots: torch.Tensor) -> np.ndarray:
        """Evidence slots [T, F * S, FIELDS] (a segment's frames' slots together) -> unit vectors [T, dim]."""
        from voco.evidence.tower import NAME, SCORE

        out = np.zeros((len(slots), self.dim), np.float32)
        phrase = self.model.projector.phrase
        for t, segment in enumerate(slots):
            filled = segment[segment[:, NAME] >= 0]
            if not len(filled):
                continue
            weights = filled[:, SCORE].clamp_min(0).cpu().numpy()[:, None]
            out[t] = (weights * self.phrase_vectors([phrase(row) for row in filled])).sum(0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.where(norms > 0, norms, 1)).astype(np.float32)

    @torch.inference_mode()
    def segment_vectors(self, caches: Sequence[SegmentCache], frames: Sequence | None = None,
                        batch_size: int = 32) -> np.ndarray:
        if frames is None:
            raise ValueError("the concept-evidence search vector is computed from the segments' frames: pass frames=")
        if not len(frames):
            return np.zeros((0, self.dim), np.float32)
        parts = []
        for i in range(0, len(frames), batch_size):
            batch = frames[i:i + batch_size]
            slots = self.model.vision_features(batch).float().cpu()  # [B * F, S, FIELDS]
            parts.append(self.vectors_from_slots(slots.reshape(len(batch), -1, slots.shape[-1])))
        return np.concatenate(parts)

    def query_vector(self, text: str) -> np.ndarray:
        return self.encoder.encode([text])[0]


EMBEDDERS: dict[str, type] = {"voco-keys": VoCoKeyEmbedder, "class-minilm": ClassEvidenceEmbedder,
                              "concept-minilm": ConceptEvidenceEmbedder}
PREFERENCE: tuple[str, ...] = ("concept-minilm", "class-minilm", "voco-keys")
"""The embedder a model gets when no config names one: the first whose class supports the model."""
DEFAULT_NOVELTY_WEIGHT = VoCoKeyEmbedder.novelty_weight  # each embedder carries its own (`novelty_weight`)


def make_embedder(name: str | None, model: VoCoModel) -> SegmentEmbedder:
    """The embedder a config name resolves to; None: the model's own (`embedder_for`)."""
    if name is None:
        return embedder_for(model)
    try:
        cls = EMBEDDERS[name]
    except KeyError:
        raise ValueError(f"unknown search embedder {name!r}; known: {sorted(EMBEDDERS)}") from None
    return cls(model)


def embedder_name_for(model: VoCoModel) -> str:
    for name in PREFERENCE:
        if EMBEDDERS[name].supports(model):
            return name
    raise TypeError(f"no search embedder supports this model ({type(model.lm).__name__}); known: {sorted(EMBEDDERS)}")


def embedder_for(model: VoCoModel) -> SegmentEmbedder:
    """The search embedder this model provides for: class evidence when its vision tower names classes,
    else the `<voco>` keys."""
    return EMBEDDERS[embedder_name_for(model)](model)


def standardised(values: np.ndarray) -> np.ndarray:
    """(values - mean) / std within one video; all zeros when the values do not vary (one segment, all equal)."""
    values = np.asarray(values, np.float64)
    spread = values.std()
    if values.size == 0 or spread == 0:
        return np.zeros(values.shape, np.float32)
    return ((values - values.mean()) / spread).astype(np.float32)


def video_scores(vectors: np.ndarray, query: np.ndarray, novelty_weight: float = 0.0) -> np.ndarray:
    """Per-segment relevance within ONE video: z(question score) + novelty_weight * z(novelty), float32 [T].

    The question score alone favours some content over other (on the bundled synthetic model a red circle scores top,
    green or yellow ones below plain backgrounds); novelty, the distance of a segment's vector from the
    video's mean vector, marks what differs from the rest of the video whatever it is. Both are standardised
    within the video so the weight means the same for any length. Only a within-video ranking: library-wide
    search across videos keeps the raw question score.
    """
    if novelty_weight < 0:
        raise ValueError(f"novelty_weight must be >= 0, got {novelty_weight}")
    vectors = np.asarray(vectors, np.float32)
    question = standardised(vectors @ query)
    if novelty_weight == 0 or len(vectors) == 0:
        return question
    novelty = np.linalg.norm(vectors - vectors.mean(axis=0), axis=1)
    return question + np.float32(novelty_weight) * standardised(novelty)
