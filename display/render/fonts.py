"""Find the fonts a sign is drawn with, and cache them per size.

Two families are enough: a CJK-capable face for any text with Chinese in it (Debian's
``fonts-wqy-microhei`` or ``fonts-noto-cjk``) and DejaVu Sans (regular and bold, from
``fonts-dejavu-core``) for the rest; the CJK face stands in when DejaVu is missing. Fonts are
looked up by file name in a list of directories, ``/usr/share/fonts`` and friends by default;
``$ROOM_DISPLAY_FONT_DIRS`` (``:``-separated) replaces that list, which is how tests simulate a
machine without CJK fonts. Only with the default list is ``fc-list :lang=zh`` asked, last.

The search order is fixed (WenQuanYi before Noto) so that golden images are reproducible on any
machine with the packages ``scripts/bootstrap`` installs.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from PIL import ImageFont

from display.errors import RoomDisplayError

log = logging.getLogger(__name__)

FONT_DIRS_ENV = "ROOM_DISPLAY_FONT_DIRS"
DEFAULT_FONT_DIRS: tuple[str, ...] = (
    "/usr/share/fonts",
    "/usr/local/share/fonts",
    "~/.local/share/fonts",
    "~/.fonts",
)

# (path relative to a font directory, face index in a .ttc). A bare file name placed directly in
# a directory is found too, so a test can copy one font into a temporary directory.
CJK_CANDIDATES: tuple[tuple[str, int], ...] = (
    ("truetype/wqy/wqy-microhei.ttc", 0),
    ("truetype/wqy/wqy-zenhei.ttc", 0),
    ("opentype/noto/NotoSansCJK-Bold.ttc", 2),  # index 2 is the Simplified Chinese face
    ("opentype/noto/NotoSansCJK-Regular.ttc", 2),
    ("truetype/arphic/uming.ttc", 0),
)
LATIN_BOLD_CANDIDATES: tuple[tuple[str, int], ...] = (
    ("truetype/dejavu/DejaVuSans-Bold.ttf", 0),
    ("truetype/liberation/LiberationSans-Bold.ttf", 0),
    ("truetype/dejavu/DejaVuSans.ttf", 0),
)
LATIN_REGULAR_CANDIDATES: tuple[tuple[str, int], ...] = (
    ("truetype/dejavu/DejaVuSans.ttf", 0),
    ("truetype/liberation/LiberationSans-Regular.ttf", 0),
    ("truetype/dejavu/DejaVuSans-Bold.ttf", 0),
)

CJK_HINT = "install fonts-wqy-microhei (apt-get install fonts-wqy-microhei) or fonts-noto-cjk"


class FontMissingError(RoomDisplayError, FileNotFoundError):
    """No font can draw the requested text; the message names the Debian package to install."""


FontFace = tuple[str, int]  # (file, face index)
Font = ImageFont.FreeTypeFont
#: A loadable font: (file or ``None`` for Pillow's built-in face, face index, size in pixels).
FontKey = tuple[str | None, int, int]
#: Loaded fonts kept (least recently used go). Pillow maps the font file once per loaded size
#: and every mapping counts its touched pages in the RSS again (a CJK face touches ~0.6 MB per
#: size): keeping every size a sign ever tried cost an 800x480 sign 26 MB. A render draws with
#: fewer sizes than this; the fitter's trial sizes pass through and are unmapped again.
FONTS_KEPT = 12


def needs_cjk(text: str) -> bool:
    """True if ``text`` has characters beyond Latin, Greek and punctuation a Latin font has.

    Cheap on purpose (called for every string drawn): anything from U+2E80 (CJK radicals) up to
    the end of the BMP's CJK/compatibility ranges counts, as do full-width forms.
    """
    return any("\u2e80" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af"
               or "\uf900" <= ch <= "\uffef" for ch in text)


def _find(dirs: Sequence[Path], candidates: Sequence[tuple[str, int]]) -> FontFace | None:
    for rel, index in candidates:
        for d in dirs:
            for path in (d / rel, d / Path(rel).name):
                if path.is_file():
                    return str(path), index
    return None


def _fontconfig_cjk() -> FontFace | None:
    """Ask fontconfig for any font covering Chinese (takes ~10 ms; done once per process)."""
    try:
        out = subprocess.run(
            ["fc-list", ":lang=zh", "file"], capture_output=True, text=True, timeout=5,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    files = sorted(line.split(":", 1)[0].strip() for line in out.splitlines() if ":" in line)
    for f in files:
        if f.endswith((".ttf", ".ttc", ".otf", ".otc")) and Path(f).is_file():
            return f, 0
    return None


class Fonts:
    """The two faces a sign needs, and their loaded sizes.

    ``dirs`` are searched in order; ``None`` means :data:`DEFAULT_FONT_DIRS` plus fontconfig.
    Loading is lazy and cached, so building one is cheap; share one per process
    (:func:`default_fonts`) to share the cache.
    """

    def __init__(self, dirs: Sequence[str | os.PathLike[str]] | None = None) -> None:
        use_fontconfig = dirs is None
        paths = [Path(d).expanduser() for d in (DEFAULT_FONT_DIRS if dirs is None else dirs)]
        self.dirs: tuple[Path, ...] = tuple(paths)
        self.cjk: FontFace | None = _find(paths, CJK_CANDIDATES)
        if self.cjk is None and use_fontconfig:
            self.cjk = _fontconfig_cjk()
        self.latin: FontFace | None = _find(paths, LATIN_REGULAR_CANDIDATES)
        self.latin_bold: FontFace | None = _find(paths, LATIN_BOLD_CANDIDATES)
        if self.latin is None:
            log.info("no DejaVu Sans found in %s; Latin text uses the CJK font or Pillow's own",
                     [str(p) for p in paths])

    def face_for(self, text: str, bold: bool = False) -> FontFace | None:
        """The face that draws ``text``; ``None`` means Pillow's built-in font (Latin only).

        Raises :class:`FontMissingError` when ``text`` has Chinese and no CJK font exists.
        """
        if needs_cjk(text):
            if self.cjk is None:
                raise FontMissingError(
                    f"no CJK font found: {CJK_HINT} "
                    f"(searched {', '.join(str(d) for d in self.dirs) or 'no directories'})")
            return self.cjk
        return (self.latin_bold if bold else self.latin) or self.cjk

    def key(self, text: str, size: int, bold: bool = False) -> FontKey:
        """What :meth:`font` loads for these arguments: a small, hashable stand-in for a font
        that does not keep the font file mapped (measured lines hold this, not the font)."""
        face = self.face_for(text, bold)
        return (None, 0, size) if face is None else (face[0], face[1], size)

    def font(self, text: str, size: int, bold: bool = False) -> Font:
        """A font of ``size`` pixels able to draw ``text`` (cached per face and size, see
        :data:`FONTS_KEPT`).

        ``bold`` picks DejaVu Sans Bold for Latin text; CJK faces have one weight.
        """
        return load(self.key(text, size, bold))

    def require_cjk(self) -> None:
        """Fail early, with the package name, if Chinese text could not be drawn."""
        self.face_for("中")


@functools.lru_cache(maxsize=FONTS_KEPT)
def load(key: FontKey) -> Font:
    """The font a :class:`FontKey` names, from a bounded cache (an evicted font is unmapped
    once nothing else holds it)."""
    path, index, size = key
    if path is None:
        return _builtin(size)
    return ImageFont.truetype(path, size=size, index=index)


@functools.lru_cache(maxsize=64)
def _builtin(size: int) -> Font:
    font = ImageFont.load_default(size)
    if not isinstance(font, ImageFont.FreeTypeFont):  # Pillow built without FreeType
        raise FontMissingError("no font found: install fonts-dejavu-core (apt-get install "
                               "fonts-dejavu-core)")
    return font


@functools.lru_cache(maxsize=8)
def _fonts_for(env_value: str | None) -> Fonts:
    if env_value is None:
        return Fonts()
    return Fonts([d for d in env_value.split(os.pathsep) if d])


def default_fonts() -> Fonts:
    """The process-wide :class:`Fonts`, honouring ``$ROOM_DISPLAY_FONT_DIRS`` (read each call,
    so a changed value takes effect; each distinct value is searched once)."""
    return _fonts_for(os.environ.get(FONT_DIRS_ENV))
