"""Scenes with exact ground truth, from real photos: Tux Paint's photo stamps pasted over wallpaper photos.

    catalogue = StampCatalogue.load(stamps_dir)          # voco/assets/stamp_concepts.tsv: name, hypernyms per stamp
    backgrounds = Backgrounds.find(background_dirs)
    frames, truth = render_scene(catalogue, backgrounds, spec, rng)   # uint8 [V, 240, 320, 3], SceneTruth

A scene is a background (a random crop of a wallpaper photo, or a plain colour or gradient) with one to three
kinds of thing on it, each one to three times, large enough to be seen. Its V frames are views of it with a small
camera move (the way a video shows one scene over a few segments). The truth is exact: each thing's everyday name
and hypernyms (the catalogue), count, and colour measured from its own pixels as pasted (`voco.colours`).

The data is installed by `scripts/get_training_data.sh` (Debian's tuxpaint-stamps-default and wallpaper packages);
nothing here is held-out evaluation media.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from voco.colours import dominant_colour
from voco.evidence.concepts import ASSETS, read_tsv, split_words
from voco.train.scene_questions import SceneTruth, Thing

SIZE = (320, 240)
CANVAS = (400, 300)
"""Scenes are composed on a larger canvas; each frame is a view into it."""
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
EXCLUDED_BACKGROUNDS = frozenset({
    # wallpapers that show a nameable thing (a flower, a fish, an animal): a scene's truth would miss it
    "calla.png", "firstgeneration.jpg", "goldfish.png", "the-mouse.jpg", "Elephants.jpg",
    "Elephants_3840x2160.jpg", "Elephants_5640x3172.jpg", "FreshFlower.jpg", "Garden.jpg", "LadyBird.jpg",
    "TwoWings.jpg", "YellowFlower.jpg", "Arc-Colors-Transparent-Wallpaper.png", "focal-ubuntukylin.png"})


@dataclass(frozen=True)
class Stamp:
    path: Path
    name: str
    hypernyms: tuple[str, ...]


class StampCatalogue:
    """The usable stamps (voco/assets/stamp_concepts.tsv) found under a stamps folder."""

    def __init__(self, stamps: list[Stamp], weights: np.ndarray | None = None):
        if not stamps:
            raise ValueError("no usable stamps: run scripts/get_training_data.sh (Debian tuxpaint-stamps-default)")
        self.stamps = stamps
        self.names = sorted({s.name for s in stamps})
        w = np.ones(len(stamps)) if weights is None else np.asarray(weights, np.float64)
        self.p = w / w.sum()

    def weighted(self, nameable: set[str], weight: float) -> StampCatalogue:
        """The same stamps, those whose name the classifier can give drawn `weight` times as often."""
        return StampCatalogue(self.stamps, [weight if s.name in nameable else 1.0 for s in self.stamps])

    def subset(self, keep) -> StampCatalogue:
        chosen = [i for i, s in enumerate(self.stamps) if keep(s)]
        return StampCatalogue([self.stamps[i] for i in chosen], self.p[chosen])

    def draw(self, rng: np.random.Generator) -> Stamp:
        return self.stamps[int(rng.choice(len(self.stamps), p=self.p))]

    @classmethod
    def load(cls, folder: str | Path, table: Path = ASSETS / "stamp_concepts.tsv") -> StampCatalogue:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no stamps folder at {folder}: run scripts/get_training_data.sh")
        rows = read_tsv(table)
        stamps = [Stamp(folder / r["path"], r["name"], tuple(split_words(r["hypernyms"]))) for r in rows
                  if (folder / r["path"]).is_file()]
        return cls(stamps)


class Backgrounds:
    """Wallpaper photos (those that show no nameable thing), read once and kept small."""

    def __init__(self, paths: list[Path]):
        self.paths = paths

    @classmethod
    def find(cls, folders) -> Backgrounds:
        paths = sorted(p for folder in folders for p in Path(folder).rglob("*")
                       if p.suffix.lower() in IMAGE_SUFFIXES and p.name not in EXCLUDED_BACKGROUNDS)
        return cls(paths)

    @staticmethod
    @lru_cache(maxsize=64)
    def image(path: Path) -> Image.Image:
        image = Image.open(path)
        if image.mode in ("RGBA", "LA", "P"):
            image = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", image.size, (128, 128, 128, 255)), image)
        image = image.convert("RGB")
        image.thumbnail((1024, 1024))
        return image

    def canvas(self, rng: np.random.Generator) -> Image.Image:
        """A CANVAS-sized background: a random crop of a photo (70%), else a plain colour or a gradient."""
        if self.paths and rng.random() < 0.7:
            image = self.image(self.paths[int(rng.integers(len(self.paths)))])
            w, h = image.size
            scale = rng.uniform(0.4, 1.0)
            cw, ch = min(w, int(h * scale * CANVAS[0] / CANVAS[1])), int(h * scale)
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return image.resize(CANVAS, Image.BILINEAR, box=(left, top, left + cw, top + ch))
        a, b = rng.integers(0, 256, size=3), rng.integers(0, 256, size=3)
        t = np.linspace(0, 1, CANVAS[1])[:, None, None] if rng.random() < 0.5 else np.zeros((1, 1, 1))
        pixels = (a * (1 - t) + b * t) * np.ones((CANVAS[1], CANVAS[0], 3))
        pixels += rng.normal(0, rng.uniform(0, 12), size=pixels.shape)
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@lru_cache(maxsize=1024)
def stamp_image(path: Path) -> Image.Image:
    image = Image.open(path).convert("RGBA")
    image.thumbnail((360, 360))
    return image


@dataclass
class SceneSpec:
    """How scenes are composed (options of the `stamp_scenes` dataset)."""

    views: int = 3
    """Frames (views) rendered per scene."""
    kinds_weights: tuple[float, float, float] = (0.6, 0.3, 0.1)
    """Chance of one, two or three kinds of thing in a scene."""
    many: float = 0.15
    """Chance that a kind shows two or three times."""
    size: tuple[float, float] = (0.4, 0.85)
    """Height of a lone thing as a share of the canvas height (several things are smaller)."""
    nameable_weight: float = 3.0
    """Stamps whose name the classifier can give (an ImageNet class has it) are drawn this many times as often:
    the others can only ever be seen through a hypernym."""


def _paste(canvas: Image.Image, stamp: Image.Image, height: int, rng: np.random.Generator,
           boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Paste `stamp` scaled to `height` where it overlaps earlier things least (of a few tries); returns the
    pasted pixels' RGB (opaque ones) for its colour."""
    scale = height / stamp.height
    w, h = max(4, int(stamp.width * scale)), max(4, height)
    if w > CANVAS[0] * 0.9:
        w, h = int(CANVAS[0] * 0.9), int(CANVAS[0] * 0.9 * stamp.height / stamp.width)
    image = stamp.resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        image = image.transpose(Image.FLIP_LEFT_RIGHT)
    best, best_overlap = (0, 0), None
    for _ in range(6):
        x, y = int(rng.integers(0, max(1, CANVAS[0] - w))), int(rng.integers(0, max(1, CANVAS[1] - h)))
        overlap = sum(max(0, min(x + w, bx + bw) - max(x, bx)) * max(0, min(y + h, by + bh) - max(y, by))
                      for bx, by, bw, bh in boxes)
        if best_overlap is None or overlap < best_overlap:
            best, best_overlap = (x, y), overlap
    canvas.paste(image, best, image)
    boxes.append((*best, w, h))
    rgba = np.asarray(image)
    return rgba[..., :3][rgba[..., 3] > 128]


def render_scene(catalogue: StampCatalogue, backgrounds: Backgrounds, spec: SceneSpec,
                 rng: np.random.Generator) -> tuple[np.ndarray, SceneTruth]:
    """One scene: its `spec.views` frames uint8 [V, 240, 320, 3] and its truth (things largest first)."""
    canvas = backgrounds.canvas(rng)
    kinds = int(rng.choice(3, p=np.asarray(spec.kinds_weights) / sum(spec.kinds_weights))) + 1
    chosen: list[Stamp] = []
    while len(chosen) < min(kinds, len(catalogue.names)):
        stamp = catalogue.draw(rng)
        if all(stamp.name != c.name for c in chosen):
            chosen.append(stamp)
    boxes: list[tuple[int, int, int, int]] = []
    things = []
    shrink = 1.0 if kinds == 1 else 0.7
    for stamp in chosen:
        count = int(rng.integers(2, 4)) if rng.random() < spec.many else 1
        height = int(CANVAS[1] * rng.uniform(*spec.size) * shrink / (1.0 if count == 1 else 1.6))
        pixels = np.concatenate([_paste(canvas, stamp_image(stamp.path), height, rng, boxes) for _ in range(count)])
        colour = dominant_colour(pixels) if len(pixels) else None
        things.append((height * count, Thing(stamp.name, stamp.hypernyms, colour, count)))
    views = []
    for _ in range(spec.views):
        zoom = rng.uniform(0.8, 1.0)
        cw, ch = CANVAS[0] * zoom, CANVAS[1] * zoom
        left, top = rng.uniform(0, CANVAS[0] - cw), rng.uniform(0, CANVAS[1] - ch)
        views.append(np.asarray(canvas.resize(SIZE, Image.BILINEAR, box=(left, top, left + cw, top + ch))))
    ordered = tuple(t for _, t in sorted(things, key=lambda x: -x[0]))
    return np.stack(views), SceneTruth(ordered)
