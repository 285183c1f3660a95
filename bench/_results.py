"""Write one benchmark's section of bench/RESULTS.md, leaving every other section as it is.

Each benchmark owns the text between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``. A
rerun replaces that text; a first run inserts the section before the hand-written
"Reading these results" notes, or at the end when there are none.
"""

from __future__ import annotations

from pathlib import Path

HAND_WRITTEN = "## Reading these results"


def write_section(path: Path, name: str, body: str) -> str:
    """Put ``body`` between ``name``'s markers in ``path`` (created if missing); returns the section."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n{body.strip(chr(10))}\n{end}"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        text = before + section + rest.split(end, 1)[1]
    elif HAND_WRITTEN in text:
        before, after = text.split(HAND_WRITTEN, 1)
        text = before.rstrip("\n") + "\n\n" + section + "\n\n" + HAND_WRITTEN + after
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
    return section
