"""easy-VQA (`pip install easy-vqa`): 64-px pictures of one coloured shape, with templated questions.

The package ships 4,000 train and 1,000 test images (PNG, RGB 64 x 64) and 38,575 + 9,673 questions, each
(question, one-word answer, image id); 13 answers in all: 3 shapes, 8 colours, yes / no (74 % of questions).
Each image is a still clip of one segment (`media.MediaLoader`: the picture repeated `frames_per_segment`
times, squared by the model's own preprocessing); its questions, `data.questions_per_video` at a time, are
the clip's questions (an image with more becomes several items that share it, as Video-ChatGPT's videos do).

Splits: easy-VQA's train images train, except the last `val_images` of them (by image id), which validate and
never train; easy-VQA's test images test. The package has no question types: each question's type is its
answer's kind (`shape`, `color`, `yes_no`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from voco.data.questions import QA
from voco.train.data import VideoExample
from voco.train.readers.dataset import SPLITS, Catalogue, MediaQAData, main_process
from voco.train.readers.media import BAD_ITEM, MISSING, Item, Media, Problems

INSTALL = "pip install easy-vqa"
SHAPES = ("circle", "rectangle", "triangle")
COLORS = ("black", "blue", "brown", "gray", "green", "red", "teal", "yellow")
KIND_OF_ANSWER: dict[str, str] = {**dict.fromkeys(SHAPES, "shape"), **dict.fromkeys(COLORS, "color"),
                                  "yes": "yes_no", "no": "yes_no"}
"""Every answer easy-VQA 1.0 has, and the question type it stands for."""
ANSWER_STYLES = {
    "word": lambda word: word,  # "circle", "yes": as the package writes them (the synthetic world's format)
    "sentence": lambda word: f"{word.capitalize()}.",  # "Circle.", "Yes.": class_mixture's short sentences
}
"""How an answer is written; evaluation compares lower-cased, without the final full stop, so both score alike."""


@dataclass
class EasyVQAOptions:
    val_images: int = 200
    """The last train images (by id) held out for validation; they never train."""
    max_questions: int = 0
    """Questions kept per image at most, in the package's order (its shape and colour questions come first,
    then yes / no: a small cap, e.g. 4, moves the mix toward the open questions); 0: all of them."""
    max_images: int = 0
    """Images per split at most, the first by id (a quick subset); 0: all."""
    answers: str = "word"
    """`word` ("circle", as easy-VQA writes it) or `sentence` ("Circle.", as class_mixture writes answers)."""

    def __post_init__(self) -> None:
        if not 1 <= self.val_images < 4000:
            raise ValueError(f"val_images must be in 1 .. 3999 (easy-VQA has 4,000 train images), got "
                             f"{self.val_images}")
        if self.max_questions < 0:
            raise ValueError(f"max_questions must be >= 0 (0: every question), got {self.max_questions}")
        if self.max_images < 0:
            raise ValueError(f"max_images must be >= 0 (0: every image), got {self.max_images}")
        if self.answers not in ANSWER_STYLES:
            raise ValueError(f"answers must be one of {sorted(ANSWER_STYLES)}, got {self.answers!r}")


def easy_vqa_package():
    try:
        import easy_vqa
    except ImportError as err:
        raise ModuleNotFoundError(f"data.dataset easy_vqa needs the easy-vqa package: {INSTALL} (setup.sh installs "
                                  "it)") from err
    return easy_vqa


def image_questions(questions: tuple[list, list, list], problems: Problems) -> dict[int, list[tuple[str, str]]]:
    """image id -> [(question, answer)] in the package's order; unknown answers are skipped and counted."""
    out: dict[int, list[tuple[str, str]]] = {}
    for question, answer, image_id in zip(*questions, strict=True):
        if answer not in KIND_OF_ANSWER:
            problems.add(BAD_ITEM, f"image {image_id}", f"answer {answer!r} is not one of easy-VQA 1.0's")
            continue
        out.setdefault(int(image_id), []).append((question, answer))
    return out


def parse_split(name: str, questions: tuple[list, list, list], paths: dict[int, str], options: EasyVQAOptions,
                problems: Problems, questions_per_video: int) -> dict[int, list[Item]]:
    """image id -> its items (one split of the package), `questions_per_video` questions per item."""
    style = ANSWER_STYLES[options.answers]
    items: dict[int, list[Item]] = {}
    for image_id, qas in sorted(image_questions(questions, problems).items()):
        path = paths.get(image_id)
        if path is None or not Path(path).is_file():
            problems.add(MISSING, f"{name} image {image_id}", f"no file {path}" if path else "no image")
            continue
        qas = qas[: options.max_questions or None]
        media = Media("image", Path(path))
        items[image_id] = [Item(f"easy_vqa-{name}-{image_id}#{start // questions_per_video}", media,
                                [[(q, style(a))] for q, a in qas[start : start + questions_per_video]], "easy_vqa")
                           for start in range(0, len(qas), questions_per_video)]
    return items


def flatten(by_image: dict[int, list[Item]], image_ids: list[int]) -> list[Item]:
    return [item for image_id in image_ids for item in by_image[image_id]]


class EasyVQAData(MediaQAData):
    """easy-VQA's images and questions (the easy-vqa package), one still segment per image."""

    name = "easy_vqa"
    Options = EasyVQAOptions  # type: ignore[assignment]

    @classmethod
    def catalogue(cls, options: EasyVQAOptions, questions_per_video: int) -> Catalogue:  # type: ignore[override]
        key = f"{cls.name}:{options}:{questions_per_video}"
        if key not in _CATALOGUES:
            _CATALOGUES[key] = cls._read(options, questions_per_video)
        return _CATALOGUES[key]

    @classmethod
    def _read(cls, options: EasyVQAOptions, questions_per_video: int) -> Catalogue:
        package, problems = easy_vqa_package(), Problems(cls.name)
        train = parse_split("train", package.get_train_questions(), package.get_train_image_paths(), options,
                            problems, questions_per_video)
        test = parse_split("test", package.get_test_questions(), package.get_test_image_paths(), options,
                           problems, questions_per_video)
        ids = sorted(train)
        if len(ids) <= options.val_images:
            raise ValueError(f"data.options.val_images: {options.val_images} held out of {len(ids)} usable train "
                             "images leaves none to train on")
        cut, limit = len(ids) - options.val_images, options.max_images or None
        splits = {"train": flatten(train, ids[:cut][:limit]), "val": flatten(train, ids[cut:][:limit]),
                  "test": flatten(test, sorted(test)[:limit])}
        if main_process():
            problems.log()
            print(f"{cls.name}: " + ", ".join(f"{split} {len(splits[split]):,} items" for split in SPLITS)
                  + f" ({problems.total:,} skipped); val is the last {options.val_images} train images", flush=True)
        return Catalogue(cls.name, splits, problems)

    def load(self, index: int) -> VideoExample:
        """Item `index` (modulo the split's size); each question typed by its answer's kind."""
        example = super().load(index)
        example.qas = [QA(qa.question, qa.answer, KIND_OF_ANSWER[qa.answer.lower().rstrip(".")])
                       for qa in example.qas]
        return example


_CATALOGUES: dict[str, Catalogue] = {}
