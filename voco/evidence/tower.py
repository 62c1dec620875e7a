"""The evidence tower: a frame -> a few slots of what is in it, in everyday words (name, hypernyms, colour, count).

    slots = EvidenceTower(config, concepts)(frames)   # uint8 [N, H, W, 3] -> float [N, S, FIELDS]

1. EfficientNet-Lite (ImageNet, frozen) reads the frame stretched to `image_size`; its last feature map
   [1280, h, w] is pooled over windows (the whole frame and overlapping corner and centre regions; with `crops`,
   each region is read again as a crop at `image_size`) and each pooled vector goes through the classifier head:
   class probabilities per window, so a thing filling a quarter of the frame is seen as well as one filling it all.
2. Class probabilities are summed into everyday names and hypernyms (`ConceptTable`: every dog breed is a dog).
   A name's score is its best window's; the `slots - 1` best names above `min_score` fill the object slots.
3. Each slot's colour is the dominant basic colour (`voco.colours`) of the pixels under the name's class
   activation map in its window; its count is the number of separate blobs of that map over the whole frame.
4. A face detector (`voco.evidence.people`) fills the person slot, first: "person", or "people" with a count.

Fields of a slot (FIELDS = 6): name id (-1: empty slot), score in [0, 1], colour id (-1: none), count,
hypernym ids (2, -1: none); word ids index `EvidenceTower.words` (the concept table's words, then "person").
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voco.colours import COLOURS, colour_index
from voco.evidence.concepts import MAX_HYPERNYMS, ConceptTable

FIELDS = 4 + MAX_HYPERNYMS
MEMO = 256
"""Frames whose slots the tower keeps (by content), oldest dropped first."""
NAME, SCORE, COLOUR, COUNT, HYPERNYMS = 0, 1, 2, 3, 4
PERSON = "person"


@dataclass
class EvidenceConfig:
    """How the evidence tower reads a frame (the `evidence` part of `assembly.json`)."""

    slots: int = 4
    """Slots per frame: the person slot first when someone is seen, then the best names."""
    min_score: float = 0.08
    """A name needs at least this probability (summed over its classes, in its best window) to fill a slot."""
    window: float = 0.6
    """Side of each corner / centre window as a share of the feature map's side."""
    faces: bool = True
    """Count faces with OpenCV's Haar cascades (the person slot)."""
    face_side: int = 320
    """Longer side of the frame the face detector reads (`voco.evidence.people.FaceCounter`)."""
    blob_threshold: float = 0.5
    """A feature-map cell belongs to a thing's blob when its activation is at least this share of the maximum."""
    crops: bool = False
    """Read the corner and centre windows as crops of the frame, each at the classifier's input size (five more
    classifier passes: a thing in a corner is seen larger), rather than as windows of the whole frame's map."""
    extra: dict = field(default_factory=dict)

    def settings(self) -> dict:
        """The fields as identities hash them: `crops`, added later, only when set, so earlier models' identities
        (and their caches and scene banks) stay as they were."""
        out = dataclasses.asdict(self)
        if not out["crops"]:
            del out["crops"]
        return out

    def __post_init__(self) -> None:
        if self.slots < 1 or not 0 < self.min_score < 1 or not 0 < self.window <= 1:
            raise ValueError("evidence: need slots >= 1, 0 < min_score < 1 and 0 < window <= 1")


def window_slices(h: int, w: int, share: float) -> list[tuple[slice, slice]]:
    """The whole map, its four corners and its centre, each corner/centre `share` of each side (rounded up)."""
    hh, ww = max(1, round(h * share + 0.49)), max(1, round(w * share + 0.49))
    top, left = (h - hh) // 2, (w - ww) // 2
    starts = [(0, 0), (0, w - ww), (h - hh, 0), (h - hh, w - ww), (top, left)]
    return [(slice(0, h), slice(0, w))] + [(slice(r, r + hh), slice(c, c + ww)) for r, c in starts]


def blobs(mask: np.ndarray) -> int:
    """Number of 4-connected groups of True cells in a small 2D mask."""
    seen = np.zeros_like(mask, dtype=bool)
    count = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        count += 1
        stack = [start]
        seen[start] = True
        while stack:
            r, c = stack.pop()
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < mask.shape[0] and 0 <= nc < mask.shape[1] and mask[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    stack.append((nr, nc))
    return count


class EvidenceTower(nn.Module):
    """EfficientNet-Lite + concept table + colour + faces -> evidence slots per frame (see the module doc)."""

    reads_frames = True
    """`VoCoModel.vision_features` hands this tower the uint8 frames, not normalised pixels."""

    def __init__(self, classifier: nn.Module, concepts: ConceptTable, config: EvidenceConfig, image_size: int,
                 mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.classifier = classifier  # EfficientNetLiteTower: .net is the EfficientNet
        self.concepts, self.config, self.image_size = concepts, config, image_size
        self.words = (*concepts.words, PERSON) if PERSON not in concepts.index else concepts.words
        self.person_id = self.words.index(PERSON)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255, persistent=False)
        self._faces = None
        self._memo: dict[bytes, torch.Tensor] = {}  # frame content digest -> slots, oldest first

    def identity(self) -> dict:
        """What changes this tower's slots beside its weights (`voco.identity`): its settings, input size and
        the concept table's content (the words and which class has which name and hypernyms)."""
        import json

        table = json.dumps([self.words, self.concepts.class_concepts, sorted(self.concepts.hypernyms.items())])
        return {"evidence": self.config.settings(), "image_size": self.image_size,
                "concepts": hashlib.sha256(table.encode()).hexdigest()}

    def train(self, mode: bool = True):
        super().train(mode)
        self.classifier.train(False)
        return self

    @property
    def faces(self):
        if self._faces is None and self.config.faces:
            from voco.evidence.people import FaceCounter

            self._faces = FaceCounter(max_side=self.config.face_side)
        return self._faces

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> the classifier's input [N, 3, S, S] (stretched, normalised)."""
        x = frames.permute(0, 3, 1, 2).float()
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                          antialias=True)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> float32 slots [N, S, FIELDS]. The slots of the last `MEMO` frames are kept by
        content: ingest reads each segment twice (its cache, then its search vector) and pays for it once."""
        frames = torch.as_tensor(frames)
        keys = [hashlib.blake2b(f.contiguous().numpy().tobytes(), digest_size=16).digest() for f in frames.cpu()]
        todo = [i for i, key in enumerate(keys) if key not in self._memo]
        if todo:
            for i, slots in zip(todo, self.read(frames[todo]), strict=True):
                self._memo[keys[i]] = slots
                while len(self._memo) > MEMO:
                    self._memo.pop(next(iter(self._memo)))
        return torch.stack([self._memo[key] for key in keys]).clone()

    @torch.no_grad()
    def read(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> float32 slots [N, S, FIELDS] (no memo)."""
        net = self.classifier.net
        x = self.pixels(frames.to(self.mean.device)).to(net._fc.weight.dtype)
        feats = net.extract_features(x).float()  # [N, 1280, h, w]
        windows = window_slices(feats.shape[2], feats.shape[3], self.config.window)
        if self.config.crops:
            pooled = self.crop_features(frames.to(self.mean.device), net)  # [N, Wn, 1280]
        else:
            pooled = torch.stack([feats[:, :, r, c].mean(dim=(2, 3)) for r, c in windows], dim=1)  # [N, Wn, 1280]
        probs = torch.softmax(net._fc(pooled.to(net._fc.weight.dtype)).float(), dim=-1)  # [N, Wn, C]
        name_scores = probs @ self.concepts.name_matrix.to(probs.device)  # [N, Wn, words]
        small = F.avg_pool2d(x.float() * self.std + self.mean, 2).clamp(0, 255)  # [N, 3, S/2, S/2]
        colours = torch.from_numpy(colour_index(small.permute(0, 2, 3, 1).byte().cpu().numpy()))  # [N, S/2, S/2]
        out = torch.full((len(frames), self.config.slots, FIELDS), -1.0)
        for i in range(len(frames)):
            out[i] = self.frame_slots(feats[i], probs[i], name_scores[i], windows, colours[i], frames[i])
        return out

    def crop_features(self, frames: torch.Tensor, net) -> torch.Tensor:
        """uint8 [N, H, W, 3] -> pooled features [N, Wn, 1280] of the whole frame and of each corner / centre
        crop (`window_slices` in pixels), every one read at the classifier's input size."""
        n, h, w, _ = frames.shape
        crops = [frames[:, r, c] for r, c in window_slices(h, w, self.config.window)]  # each [N, h', w', 3]
        x = torch.cat([self.pixels(crop) for crop in crops]).to(net._fc.weight.dtype)  # [Wn * N, 3, S, S]
        pooled = net.extract_features(x).float().mean(dim=(2, 3))  # [Wn * N, 1280]
        return pooled.view(len(crops), n, -1).transpose(0, 1)

    def frame_slots(self, feats: torch.Tensor, probs: torch.Tensor, name_scores: torch.Tensor, windows,
                    colours: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        """One frame's slots [S, FIELDS]: the person slot (when someone is seen), then the best names."""
        cfg = self.config
        slots = torch.full((cfg.slots, FIELDS), -1.0)
        best, where = name_scores.max(dim=0)  # [words]: each name's best window
        people = self.faces(frame.cpu().numpy()) if self.faces is not None else 0
        first = 0
        if people:  # the person slot comes first: it is among the slots a `<voco>` cache is taught to hold
            slots[0, NAME], slots[0, SCORE], slots[0, COUNT] = self.person_id, 1.0, people
            first = 1
        order = [int(w) for w in best.argsort(descending=True)[:cfg.slots - first] if best[w] >= cfg.min_score]
        for s, word in enumerate(order, start=first):
            window = int(where[word])
            cam = self.activation(feats, probs[window], word)  # [h, w]
            slots[s, NAME], slots[s, SCORE] = word, float(best[word])
            slots[s, COLOUR] = self.colour(cam, windows[window], colours)
            slots[s, COUNT] = blobs((cam >= cfg.blob_threshold * cam.max()).numpy()) if cam.max() > 0 else 1
            hyps = self.concepts.hypernym_ids(word)
            slots[s, HYPERNYMS:HYPERNYMS + len(hyps)] = torch.tensor(hyps, dtype=torch.float32)
        return slots

    def activation(self, feats: torch.Tensor, window_probs: torch.Tensor, word: int) -> torch.Tensor:
        """Class activation map [h, w] of a name: its classes' head weights (weighted by their probability in
        the name's window) against every cell's features, negative parts clipped."""
        net = self.classifier.net
        members = (self.concepts.class_name_id == word).nonzero()[:, 0]
        weight = (window_probs[members, None] * net._fc.weight[members].float()).sum(0)  # [1280]
        return torch.relu(torch.einsum("d,dhw->hw", weight, feats))

    @staticmethod
    def colour(cam: torch.Tensor, window: tuple[slice, slice], colours: torch.Tensor) -> int:
        """The dominant colour (`colours`: each pixel's colour index) under the activation map, in its window."""
        inside = torch.zeros_like(cam)
        inside[window] = cam[window]
        if inside.max() <= 0:
            return -1
        weights = F.interpolate(inside[None, None] ** 2, size=colours.shape, mode="bilinear", align_corners=False)
        return int(torch.bincount(colours.reshape(-1), weights.reshape(-1), minlength=len(COLOURS)).argmax())
