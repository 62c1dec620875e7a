"""Text the database can hold: file names are bytes, and not every name is valid UTF-8."""

from __future__ import annotations


def storable_text(text: str) -> str:
    """`text` as valid UTF-8 text for a text column.

    Python holds a file name's undecodable bytes as lone surrogates (PEP 383: `caf\\udce9.mp4` for the
    bytes `caf\\xe9.mp4`); no database driver can encode those. They become `\\xNN` (the name readable,
    the byte visible); any other text is returned unchanged. The store keeps paths to show them: the
    caller keeps the real name (the `str` or bytes it was given) to open the file.
    """
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that does not stand for a byte (not from a file name)
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "backslashreplace")
