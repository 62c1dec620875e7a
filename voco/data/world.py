"""Seeded synthetic video world: coloured shapes that enter, move, change colour and leave.

Everything is numpy only. A :class:`Video` holds the rendered frames (``uint8 [N, H, W, 3]``) together
with the complete ground truth (per-object tracks, per-frame object states, an event list and the
background colour timeline), so that question generation never has to look at pixels.

Design rules that keep the questions unambiguous and learnable by a tiny model:

* at most ``max_visible_objects`` (default 3) objects at once, never overlapping, never clipped;
* two objects never enter within one second of each other (so "which appears first" is clear);
* a (shape, colour) pair is used by at most one object over the whole video, counting colours
  taken after a colour change (so "the red circle" always names exactly one object);
* an object's start position lies clearly inside one of five regions (left/right/top/bottom/center),
  and a moving object travels at least 20 % of the frame in one axis-aligned direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from voco.data.render import BACKGROUND_COLORS, ENCLOSING_RADIUS_FACTOR, OBJECT_COLORS, render_frames

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond", "cross")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down", "none")
REGIONS: tuple[str, ...] = ("left", "right", "top", "bottom", "center")
_DIRECTION_UNIT: dict[str, tuple[int, int]] = {
    "left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "none": (0, 0),
}
_REGION_OF_DIRECTION: dict[str, str] = {"left": "left", "right": "right", "up": "top", "down": "bottom"}
# Start-position box per region, as fractions of the frame side: (x_low, x_high, y_low, y_high).
_REGION_BOXES: dict[str, tuple[float, float, float, float]] = {
    "left": (0.0, 0.30, 0.40, 0.60), "right": (0.70, 1.0, 0.40, 0.60), "top": (0.40, 0.60, 0.0, 0.30),
    "bottom": (0.40, 0.60, 0.70, 1.0), "center": (0.44, 0.56, 0.44, 0.56),
}


@dataclass(frozen=True)
class WorldConfig:
    """Knobs of the synthetic world. Sizes are in pixels of the square frame side ``size``."""

    size: int = 96  # frame height == width, must be even (yuv420p)
    fps: int = 8
    min_seconds: float = 4.0
    max_seconds: float = 24.0
    max_visible_objects: int = 3  # objects on screen at the same time
    max_total_objects: int = 5  # distinct objects over the whole video
    max_object_seconds: float = 16.0  # longest time one object stays on screen (matters for long videos)
    object_size_fraction: tuple[float, float] = (12 / 96, 22 / 96)  # shape diameter / frame side
    color_change_prob: float = 0.25  # chance that an object changes colour once while visible
    scene_change_prob: float = 0.5  # chance that the background colour changes (1-2 times)
    noise_std: float = 0.0  # std of additive Gaussian pixel noise (0 = clean frames)
    shapes: tuple[str, ...] = SHAPES
    colors: tuple[str, ...] = tuple(OBJECT_COLORS)

    def __post_init__(self) -> None:
        if self.size < 32 or self.size % 2:
            raise ValueError(f"size must be an even number >= 32, got {self.size}")
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")
        if not 2.0 <= self.min_seconds <= self.max_seconds:
            raise ValueError(f"need 2 <= min_seconds <= max_seconds: {self.min_seconds}, {self.max_seconds}")
        if self.max_visible_objects < 1 or self.max_total_objects < 1:
            raise ValueError("max_visible_objects and max_total_objects must be >= 1")
        unknown = set(self.shapes) - set(SHAPES) | set(self.colors) - set(OBJECT_COLORS)
        if unknown or len(self.shapes) < 2 or len(self.colors) < 2:
            raise ValueError(f"need >= 2 known shapes and colours; unknown: {sorted(unknown)}")


@dataclass(frozen=True)
class ObjectTrack:
    """One object over its whole life. Positions are shape centres in pixels (x right, y down)."""

    object_id: int  # 0, 1, ... in order of entering
    shape: str
    color: str  # colour when it enters
    size: float  # diameter in pixels
    enter_frame: int  # first visible frame
    leave_frame: int  # first frame it is gone again (== num_frames if visible until the end)
    start_x: float
    start_y: float
    velocity_x: float  # pixels per frame
    velocity_y: float
    direction: str  # one of DIRECTIONS
    start_region: str  # one of REGIONS, where it is when it enters
    color_change_frame: int | None = None  # first frame showing new_color
    new_color: str | None = None

    def is_visible(self, frame: int) -> bool:
        return self.enter_frame <= frame < self.leave_frame

    def position(self, frame: int) -> tuple[float, float]:
        steps = frame - self.enter_frame
        return self.start_x + self.velocity_x * steps, self.start_y + self.velocity_y * steps

    def color_at(self, frame: int) -> str:
        if self.color_change_frame is not None and frame >= self.color_change_frame:
            return self.new_color or self.color
        return self.color

    @property
    def colors(self) -> tuple[str, ...]:
        """All colours the object shows, in order."""
        return (self.color,) if self.new_color is None else (self.color, self.new_color)


@dataclass(frozen=True)
class ObjectState:
    """Ground truth of one visible object in one frame."""

    object_id: int
    shape: str
    color: str
    x: float
    y: float
    size: float


@dataclass(frozen=True)
class Event:
    """Something that happens at a frame: enter, leave, color_change or background_change."""

    frame: int
    time_s: float
    kind: str
    object_id: int | None = None  # None for background_change
    shape: str | None = None
    color: str | None = None  # colour after the event (object colour, or new background colour)


@dataclass(frozen=True)
class BackgroundSpan:
    """Background colour over frames [start_frame, end_frame)."""

    start_frame: int
    end_frame: int
    color: str


@dataclass
class Video:
    """A rendered synthetic video and its ground truth."""

    video_id: str
    fps: int
    size: int
    num_frames: int
    objects: list[ObjectTrack]
    events: list[Event]
    backgrounds: list[BackgroundSpan]
    frame_states: list[list[ObjectState]]  # [N] lists of visible objects per frame
    frames: np.ndarray | None = field(default=None, repr=False)  # [N, H, W, 3] uint8, None if not rendered

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def background_at(self, frame: int) -> str:
        for span in self.backgrounds:
            if span.start_frame <= frame < span.end_frame:
                return span.color
        raise IndexError(f"frame {frame} outside video of {self.num_frames} frames")

    def ground_truth(self) -> dict:
        """JSON-serialisable ground truth (no pixels, no per-frame states)."""
        return {
            "video_id": self.video_id, "fps": self.fps, "size": self.size, "num_frames": self.num_frames,
            "duration_s": round(self.duration_s, 3),
            "objects": [_rounded(obj.__dict__) for obj in self.objects],
            "events": [_rounded(ev.__dict__) for ev in self.events],
            "backgrounds": [span.__dict__ for span in self.backgrounds],
        }


def _rounded(values: dict) -> dict:
    return {key: round(val, 3) if isinstance(val, float) else val for key, val in values.items()}


def as_generator(seed: int | np.random.SeedSequence | np.random.Generator) -> np.random.Generator:
    """Accept an int seed, a SeedSequence or a Generator."""
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def region_of(x: float, y: float, size: int) -> str:
    """Which of the five regions a point lies in (the classification used for `location` answers)."""
    half = size / 2
    norm_x, norm_y = (x - half) / half, (y - half) / half
    if max(abs(norm_x), abs(norm_y)) <= 0.2:
        return "center"
    if abs(norm_x) > abs(norm_y):
        return "left" if norm_x < 0 else "right"
    return "top" if norm_y < 0 else "bottom"


def _sample_motion(
    rng: np.random.Generator, size: int, radius: float, life: int
) -> tuple[str, str, float, float, float, float]:
    """Pick direction, start region and start point so the whole path stays inside the frame."""
    margin = radius * ENCLOSING_RADIUS_FACTOR + 1
    min_travel = 0.2 * size
    for _ in range(100):
        direction = str(rng.choice(DIRECTIONS))
        # never start at the side it moves towards: there would be no room to travel
        region = str(rng.choice([r for r in REGIONS if r != _REGION_OF_DIRECTION.get(direction)]))
        x_lo, x_hi, y_lo, y_hi = _REGION_BOXES[region]
        x = rng.uniform(max(x_lo * size, margin), min(x_hi * size, size - margin))
        y = rng.uniform(max(y_lo * size, margin), min(y_hi * size, size - margin))
        unit_x, unit_y = _DIRECTION_UNIT[direction]
        if direction == "none":
            return direction, region, x, y, 0.0, 0.0
        room = {"left": x - margin, "right": size - margin - x, "up": y - margin, "down": size - margin - y}
        available = room[direction]
        if available < min_travel:
            continue
        travel = rng.uniform(min_travel, min(available, 0.6 * size))
        speed = travel / max(life - 1, 1)
        return direction, region, x, y, unit_x * speed, unit_y * speed
    center = size / 2
    return "none", "center", center, center, 0.0, 0.0


def _paths_clear(track: ObjectTrack, others: list[ObjectTrack]) -> bool:
    """True when the track never touches any other track while both are visible."""
    for other in others:
        start = max(track.enter_frame, other.enter_frame)
        stop = min(track.leave_frame, other.leave_frame)
        if start >= stop:
            continue
        frames = np.arange(start, stop)  # [F]
        dx = (track.start_x + track.velocity_x * (frames - track.enter_frame)) - (
            other.start_x + other.velocity_x * (frames - other.enter_frame))
        dy = (track.start_y + track.velocity_y * (frames - track.enter_frame)) - (
            other.start_y + other.velocity_y * (frames - other.enter_frame))
        min_gap = ENCLOSING_RADIUS_FACTOR * (track.size + other.size) / 2 + 2
        if np.min(dx * dx + dy * dy) <= min_gap * min_gap:
            return False
    return True


def _sample_objects(config: WorldConfig, rng: np.random.Generator, num_frames: int) -> list[ObjectTrack]:
    fps, size = config.fps, config.size
    duration_s = num_frames / fps
    upper = min(config.max_total_objects, 1 + int(duration_s // 4))
    wanted = int(rng.integers(1, upper + 1))
    # lifetimes scale with the video (15-60 %) but stay between 1.5 s and max_object_seconds
    max_life_cap = round(config.max_object_seconds * fps)
    min_life = min(num_frames, max(round(1.5 * fps), min(round(0.15 * num_frames), max_life_cap // 4)))
    max_life = min(num_frames, max(min_life, min(round(0.6 * num_frames), max_life_cap)))
    visible_count = np.zeros(num_frames, dtype=np.int64)  # [N] objects on screen per frame
    used_pairs: set[tuple[str, str]] = set()
    tracks: list[ObjectTrack] = []
    for _ in range(wanted * 60):  # rejection sampling; gives up quietly if the world is full
        if len(tracks) == wanted:
            break
        enter = int(rng.integers(0, num_frames - min_life + 1))
        room = num_frames - enter
        stays_to_end = rng.random() < 0.25 and room <= max_life
        life = room if stays_to_end else int(rng.integers(min_life, min(max_life, room) + 1))
        leave = enter + life
        if any(abs(enter - t.enter_frame) < fps for t in tracks):
            continue
        if visible_count[enter:leave].max(initial=0) >= config.max_visible_objects:
            continue
        free_pairs = [(s, c) for s in config.shapes for c in config.colors if (s, c) not in used_pairs]
        if not free_pairs:
            break
        shape, color = free_pairs[int(rng.integers(len(free_pairs)))]
        diameter = size * rng.uniform(*config.object_size_fraction)
        direction, region, x, y, vx, vy = _sample_motion(rng, size, diameter / 2, life)
        change_frame, new_color = None, None
        if life >= 2 * fps and rng.random() < config.color_change_prob:
            options = [c for c in config.colors if c != color and (shape, c) not in used_pairs]
            if options:
                new_color = str(options[int(rng.integers(len(options)))])
                change_frame = enter + int(life * rng.uniform(0.35, 0.65))
        track = ObjectTrack(
            object_id=-1, shape=shape, color=color, size=float(diameter), enter_frame=enter,
            leave_frame=leave, start_x=float(x), start_y=float(y), velocity_x=float(vx), velocity_y=float(vy),
            direction=direction, start_region=region, color_change_frame=change_frame, new_color=new_color,
        )
        if not _paths_clear(track, tracks):
            continue
        tracks.append(track)
        visible_count[enter:leave] += 1
        used_pairs.update((shape, c) for c in track.colors)
    tracks.sort(key=lambda t: t.enter_frame)
    return [replace(track, object_id=index) for index, track in enumerate(tracks)]


def _sample_backgrounds(
    config: WorldConfig, rng: np.random.Generator, num_frames: int
) -> list[BackgroundSpan]:
    names = list(BACKGROUND_COLORS)
    color = names[int(rng.integers(len(names)))]
    change_frames: list[int] = []
    if rng.random() < config.scene_change_prob:
        wanted = int(rng.integers(1, 3))
        low, high = int(0.15 * num_frames), int(0.85 * num_frames)
        for _ in range(20):
            if len(change_frames) == wanted or high <= low:
                break
            frame = int(rng.integers(low, high))
            if all(abs(frame - other) >= 1.5 * config.fps for other in change_frames):
                change_frames.append(frame)
    spans: list[BackgroundSpan] = []
    bounds = [0, *sorted(change_frames), num_frames]
    for start, end in zip(bounds[:-1], bounds[1:], strict=True):
        if spans:
            color = [n for n in names if n != spans[-1].color][int(rng.integers(len(names) - 1))]
        spans.append(BackgroundSpan(start, end, color))
    return spans


def _build_events(objects: list[ObjectTrack], backgrounds: list[BackgroundSpan], num_frames: int,
                  fps: int) -> list[Event]:
    events: list[Event] = []
    for obj in objects:
        enter_s = obj.enter_frame / fps
        events.append(Event(obj.enter_frame, enter_s, "enter", obj.object_id, obj.shape, obj.color))
        if obj.color_change_frame is not None:
            events.append(Event(obj.color_change_frame, obj.color_change_frame / fps, "color_change",
                                obj.object_id, obj.shape, obj.new_color))
        if obj.leave_frame < num_frames:
            events.append(Event(obj.leave_frame, obj.leave_frame / fps, "leave", obj.object_id, obj.shape,
                                obj.color_at(obj.leave_frame - 1)))
    for span in backgrounds[1:]:
        events.append(Event(span.start_frame, span.start_frame / fps, "background_change", color=span.color))
    kind_order = {"leave": 0, "background_change": 1, "color_change": 2, "enter": 3}
    return sorted(events, key=lambda ev: (ev.frame, kind_order[ev.kind], ev.object_id or 0))


def frame_states_of(objects: list[ObjectTrack], num_frames: int) -> list[list[ObjectState]]:
    """Per-frame list of visible objects (ordered by object_id)."""
    states: list[list[ObjectState]] = [[] for _ in range(num_frames)]
    for obj in objects:
        for frame in range(obj.enter_frame, obj.leave_frame):
            x, y = obj.position(frame)
            states[frame].append(ObjectState(obj.object_id, obj.shape, obj.color_at(frame), x, y, obj.size))
    return states


def generate_video(
    config: WorldConfig | None = None,
    seed: int | np.random.SeedSequence | np.random.Generator = 0,
    video_id: str = "video",
    render: bool = True,
) -> Video:
    """Simulate one video from a seed; ``render=False`` skips pixels (ground truth only, much faster)."""
    config = config or WorldConfig()
    rng = as_generator(seed)
    seconds = rng.uniform(config.min_seconds, config.max_seconds)
    num_frames = max(int(round(seconds * config.fps)), 2)
    objects = _sample_objects(config, rng, num_frames)
    backgrounds = _sample_backgrounds(config, rng, num_frames)
    video = Video(
        video_id=video_id, fps=config.fps, size=config.size, num_frames=num_frames, objects=objects,
        events=_build_events(objects, backgrounds, num_frames, config.fps), backgrounds=backgrounds,
        frame_states=frame_states_of(objects, num_frames),
    )
    noise_rng = np.random.default_rng(rng.integers(2**63))  # drawn even when unused: same stream either way
    if render:
        video.frames = render_frames(video, config.noise_std, noise_rng)
    return video
