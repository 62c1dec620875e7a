"""scripts/probe_video_lengths.py: length ranges parse, and bad ones are refused with the reason."""

import argparse

import pytest

from scripts.probe_video_lengths import length_range


def test_length_ranges():
    assert length_range("2-4") == (2, 4) and length_range("7") == (7, 7)
    for bad, reason in (("5-3", "LOW <= HIGH"), ("0-2", "LOW <= HIGH"), ("a-b", "LOW-HIGH segments")):
        with pytest.raises(argparse.ArgumentTypeError, match=reason):
            length_range(bad)
