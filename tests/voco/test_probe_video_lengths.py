"""scripts/probe_video_lengths.py: length ranges and options parse, and bad ones are refused with the reason."""

import argparse

import pytest

from scripts.probe_video_lengths import length_range, option


def test_length_ranges():
    assert length_range("2-4") == (2, 4) and length_range("7") == (7, 7)
    for bad, reason in (("5-3", "LOW <= HIGH"), ("0-2", "LOW <= HIGH"), ("a-b", "LOW-HIGH segments")):
        with pytest.raises(argparse.ArgumentTypeError, match=reason):
            length_range(bad)


def test_options():
    assert option("drift=0.5") == ("drift", 0.5) and option("kinds=[what, last]") == ("kinds", ["what", "last"])
    for bad in ("drift", "=3"):
        with pytest.raises(argparse.ArgumentTypeError, match="KEY=VALUE"):
            option(bad)
