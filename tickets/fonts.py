"""The ticket's font, made cheap to embed: Noto Sans's regular instance as a static font.

Noto Sans ships as a variable font (width and weight axes). fpdf2 subsets the embedded font
for every document, and subsetting the variable one (its variation tables, its layout tables)
was most of a ticket's CPU: about 100 ms of a 103 ms render. Its default instance, cut once
with fontTools' instancer and without the tables fpdf2 never reads (fpdf2 draws glyphs by
cmap and advance widths; it shapes no text here), renders the same glyphs in about half the
time. The instance is made once per machine and kept beside the temporary files, named by a
digest of the source font, so every process (the mail's render pool too) reads it; a new
font package makes a new file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from functools import cache
from importlib.resources import files
from pathlib import Path

_FONT_PACKAGE, _FONT_FILE = "fontpkg_noto_sans", "files/NotoSans[wdth,wght].ttf"
# Tables fpdf2 does not use without text shaping; variation tables go with the instancing.
_UNUSED = ("GSUB", "GPOS", "GDEF", "STAT", "MVAR", "HVAR", "meta")
_RECIPE = "regular-static-1"  # bump when the cut changes, so an old file is not reused


@cache
def ticket_font() -> Path:
    """The static regular instance's path, made now if this machine has none yet."""
    source = files(_FONT_PACKAGE).joinpath(_FONT_FILE).read_bytes()
    digest = hashlib.sha256(source + _RECIPE.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"paysaga-noto-sans-{digest}.ttf"
    if not path.exists():
        _cut(source, path)
    return path


def _cut(source: bytes, path: Path) -> None:
    from io import BytesIO

    from fontTools.ttLib import TTFont  # type: ignore[import-untyped]
    from fontTools.varLib import instancer  # type: ignore[import-untyped]

    font = instancer.instantiateVariableFont(TTFont(BytesIO(source)), {"wght": 400, "wdth": 100})
    for tag in _UNUSED:
        if tag in font:
            del font[tag]
    # Written aside and renamed: processes cutting it at once never read half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            font.save(out)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
