"""Frame preprocessing: LLaVA-1.5's pad-to-square as transformers' LlavaImageProcessor defines it (checked
against the real processor, PIL backend), CLIP's crop, today's stretch unchanged; the mode in voco.json and
read from a plain LLaVA checkpoint's preprocessor_config.json."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from transformers import LlavaForConditionalGeneration
from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

from voco import VoCoModel
from voco.config import VoCoConfig
from voco.preprocess import (
    PadToSquare,
    ResizeCrop,
    ResizeMode,
    Stretch,
    frame_preprocessor,
    llava_preprocessing,
    pad_to_square,
)
from voco.tiny import tiny_config, tiny_model, tiny_tokenizer

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
ONE_LEVEL = 1.001 / 255 / min(STD)  # one 8-bit grey level after normalisation


def assert_same_pixels(mine: np.ndarray, theirs: np.ndarray, levels: float = 0.0) -> None:
    """Equal to float rounding (PIL's 8-bit bicubic reproduced), or within `levels` 8-bit grey levels."""
    diff = np.abs(mine - theirs)
    assert diff.max() <= levels * ONE_LEVEL + 1e-5, (diff.max() / ONE_LEVEL, diff.mean() / ONE_LEVEL)


def frame(h: int, w: int) -> np.ndarray:
    """A non-square frame with content everywhere (gradients and a sharp bar), uint8 [h, w, 3]."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([yy * 255 / h, xx * 255 / w, (yy + xx) * 127 / (h + w)], -1)
    img[:, w // 3 : w // 3 + 3] = 255
    return img.astype(np.uint8)


@pytest.mark.parametrize("h, w", [(20, 32), (21, 32), (33, 20)])
def test_pad_is_mean_colour_centred(h, w):
    img = frame(h, w)
    fill = tuple(int(m * 255) for m in MEAN)
    assert fill == (122, 116, 104)  # int(), as LLaVA's expand2square and transformers write it
    out = pad_to_square(torch.from_numpy(img)[None], fill)[0].numpy()
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2  # centred; an odd pixel of padding goes after the frame
    assert out.shape == (side, side, 3)
    assert np.array_equal(out[top : top + h, left : left + w], img)
    border = np.ones((side, side), bool)
    border[top : top + h, left : left + w] = False
    assert border.sum() == side * side - h * w and (out[border] == fill).all()
    # the real processor's own padding, pixel for pixel
    theirs = LlavaImageProcessorPil().pad_to_square(img.transpose(2, 0, 1), background_color=fill)
    assert np.array_equal(out, theirs.transpose(1, 2, 0))


@pytest.mark.parametrize("do_pad, ours, levels", [(True, PadToSquare, 0), (False, ResizeCrop, 1)])
@pytest.mark.parametrize("h, w", [(45, 80), (81, 44), (20, 44)])
def test_pixels_match_the_llava_processor(do_pad, ours, levels, h, w):
    """Pad (or crop), bicubic resize, rescale, CLIP normalisation: transformers' LlavaImageProcessor's pixels
    (pad: exactly; crop: a few pixels one grey level off); stretching is far from them."""
    size, img = 32, frame(h, w)
    processor = LlavaImageProcessorPil(do_pad=do_pad, size={"shortest_edge": size},
                                       crop_size={"height": size, "width": size})
    theirs = processor(images=[img], return_tensors="np")["pixel_values"][0]
    mine = ours(size, MEAN, STD)(torch.from_numpy(img)[None])[0].numpy()
    assert mine.shape == theirs.shape == (3, size, size)
    assert_same_pixels(mine, theirs, levels)
    stretched = Stretch(size, MEAN, STD)(torch.from_numpy(img)[None])[0].numpy()
    assert np.abs(stretched - theirs).max() > 20 * ONE_LEVEL


def test_stretch_is_todays_preprocessing_bit_for_bit():
    """The bundled models' mode: the formula model.pixel_values used before modes existed."""
    frames = torch.from_numpy(np.stack([frame(45, 80), frame(45, 80)[::-1].copy()]))
    x = frames.permute(0, 3, 1, 2).float() / 255.0
    x = F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True, align_corners=False)
    before = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    assert torch.equal(frame_preprocessor(ResizeMode.STRETCH, 32, MEAN, STD)(frames), before)


def test_mode_is_a_validated_voco_json_field(tmp_path):
    with pytest.raises(ValueError, match=r"image_resize must be one of \['stretch', 'pad', 'crop'\]"):
        VoCoConfig(image_resize="letterbox")
    assert "image_resize" not in VoCoConfig().to_dict()  # stretch: voco.json and identity as before
    VoCoConfig(image_resize="pad").save(tmp_path)
    assert json.loads((tmp_path / "voco.json").read_text())["image_resize"] == "pad"
    assert VoCoConfig.load(tmp_path).image_resize is ResizeMode.PAD


def test_bundled_style_model_keeps_its_fingerprint():
    """A model without the field set has the identity it had before the field existed."""
    model = tiny_model("llama", k=1)
    padded = tiny_model("llama", k=1, image_resize="pad")
    assert model.voco.image_resize is ResizeMode.STRETCH and model.fingerprint != padded.fingerprint


def _write(folder, data) -> None:
    (folder / "preprocessor_config.json").write_text(json.dumps(data))


@pytest.mark.parametrize("data, mode", [
    ({"do_pad": True, "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32},
      "do_center_crop": True}, ResizeMode.PAD),
    ({"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32}, "do_center_crop": True},
     ResizeMode.PAD),  # a CLIPImageProcessor config without do_pad: LLaVA-1.5 was trained padded
    ({"do_pad": False, "size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32},
      "do_center_crop": True}, ResizeMode.CROP),
    ({"size": {"height": 32, "width": 32}}, ResizeMode.STRETCH),  # SigLIP-style: resize to the square
])
def test_mode_from_preprocessor_config(tmp_path, data, mode):
    _write(tmp_path, {**data, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.25, 0.5, 0.5]})
    fields = llava_preprocessing(tmp_path, 32)
    assert fields == {"image_resize": mode, "image_mean": (0.5, 0.5, 0.5), "image_std": (0.25, 0.5, 0.5)}


def test_bad_preprocessor_configs_name_the_file(tmp_path):
    assert llava_preprocessing(tmp_path, 32) == {"image_resize": ResizeMode.PAD}  # none: LLaVA-1.5's
    _write(tmp_path, {"do_pad": True, "crop_size": {"height": 336, "width": 336}, "do_center_crop": True})
    with pytest.raises(ValueError, match=r"preprocessor_config.json: the processor makes 336 px .* reads 32 px"):
        llava_preprocessing(tmp_path, 32)
    (tmp_path / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="preprocessor_config.json: cannot read it as JSON"):
        llava_preprocessing(tmp_path, 32)


def test_plain_llava_checkpoint_uses_its_processors_preprocessing(tmp_path):
    tokenizer = tiny_tokenizer(with_voco=False)
    config = tiny_config("llama", vocab_size=len(tokenizer))
    LlavaForConditionalGeneration(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    size = config.vision_config.image_size
    processor = LlavaImageProcessorPil(do_pad=True, size={"shortest_edge": size},
                                       crop_size={"height": size, "width": size}, image_mean=[0.5, 0.4, 0.3])
    processor.save_pretrained(tmp_path)  # transformers' own preprocessor_config.json

    with pytest.warns(UserWarning, match="not been VoCo-tuned"):
        model = VoCoModel.from_pretrained(tmp_path, frames_per_segment=1)
    assert model.voco.image_resize is ResizeMode.PAD and model.voco.image_mean == (0.5, 0.4, 0.3)
    img = frame(20, 44)
    theirs = processor(images=[img], return_tensors="np")["pixel_values"][0]
    mine = model.pixel_values([torch.from_numpy(img)[None]])[0].numpy()
    assert_same_pixels(mine, theirs)

    model.save_pretrained(tmp_path / "voco")  # the mode travels in voco.json
    assert VoCoModel.from_pretrained(tmp_path / "voco").voco.image_resize is ResizeMode.PAD
