"""Real training data behind the dataset protocol: `data: {dataset: NAME, options: {...}}` in a config.

    llava_json    LLaVA conversation JSON, images and videos, multi-turn (`formats.LlavaJsonOptions`)
    videochatgpt  Video-ChatGPT's {video_id, q, a} instruction JSON (`formats.VideoChatGPTOptions`)
    webvid        (video, caption) pairs: a folder of x.mp4 + x.txt, or a CSV (`formats.WebVidOptions`)
    easy_vqa      easy-VQA's shape images and questions, from the easy-vqa package (`easy_vqa.EasyVQAOptions`)
    mix           several of the above as one (`dataset.MixOptions`)

Media become segments as inference sees them (`media.MediaLoader`: ingest's decode routine, the model's own
preprocessing); bad media and bad items are counted, skipped and summarised (`media.Problems`).
"""

from voco.train.readers.dataset import SOURCES, LlavaJsonData, MediaQAData, MixData, VideoChatGPTData, WebVidData
from voco.train.readers.easy_vqa import EasyVQAData

SOURCES[EasyVQAData.name] = EasyVQAData  # after the formats in dataset.py, which it builds on; `mix` can name it

__all__ = ["SOURCES", "EasyVQAData", "LlavaJsonData", "MediaQAData", "MixData", "VideoChatGPTData", "WebVidData"]
