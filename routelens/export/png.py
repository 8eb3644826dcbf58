"""A scene (drawing.py) rasterised with Pillow: the same shapes as the SVG, drawn at `scale`x with
up to 4x supersampling for smooth lines, then reduced; text is drawn at the final size (rotated
labels drawn level into a mask, turned and pasted)."""

from __future__ import annotations

from functools import lru_cache
from io import BytesIO
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from .drawing import Circle, Polygon, Rect, Scene, Stroke, Text, bezier

MAX_PIXELS = 24_000_000  # of the final image; larger scenes are drawn at a smaller scale
MAX_SUPERSAMPLED = 120_000_000  # pixels drawn before the reduction (about 360 MB of RGB)
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/dejavu", "/Library/Fonts", "C:/Windows/Fonts")
FONTS = {False: ("DejaVuSans.ttf", "Arial.ttf", "arial.ttf"), True: ("DejaVuSansMono.ttf", "Menlo.ttc", "consola.ttf")}
BOLD = {False: ("DejaVuSans-Bold.ttf", "Arial Bold.ttf", "arialbd.ttf"), True: ("DejaVuSansMono-Bold.ttf",)}
# Pillow's built-in font lacks these; with it, tokens show plain stand-ins
PLAIN = str.maketrans({"\u2423": "_", "\u21b5": "\\n", "\u21e5": "\\t", "\u240d": "\\r", "\u237d": "_", "\u2205": "{}",
                       "\u2192": "->", "\u2026": "..."})


def _rgba(color: str, opacity: float = 1.0) -> tuple[int, int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16), round(255 * max(0.0, min(1.0, opacity)))


@lru_cache(maxsize=64)
def _font(size: float, mono: bool, bold: bool) -> tuple[ImageFont.FreeTypeFont | ImageFont.ImageFont, bool]:
    """A system TrueType font (DejaVu on Linux) when there is one, else Pillow's own; the flag
    says whether it has the symbols tokens are shown with."""
    for name in (BOLD if bold else FONTS)[mono] + FONTS[mono]:
        for folder in FONT_DIRS:
            try:
                return ImageFont.truetype(f"{folder}/{name}", size=max(1.0, size)), True
            except OSError:
                continue
    return ImageFont.load_default(size=max(1.0, size)), False


def _upward(image: Image.Image, x: float, y: float, text: str, font: Any, fill: str) -> None:
    """`text` reading upward, ending at (x, y), centred across x (SVG: rotate(-90 x y) with
    text-anchor end and dominant-baseline central): drawn level into a mask, turned, pasted."""
    left, top, right, bottom = (round(v) for v in font.getbbox(text, anchor="rm"))
    if right <= left or bottom <= top:
        return
    mask = Image.new("L", (right - left, bottom - top), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font, anchor="rm")
    mask = mask.rotate(90, expand=True)  # counterclockwise: local (u, v) from the anchor lands at (v, -u)
    image.paste(Image.new("RGB", mask.size, fill), (round(x + top), round(y - right)), mask)


def to_png(scene: Scene, scale: float = 2.0) -> bytes:
    """PNG bytes of `scene`, `scale` output pixels per drawing unit (reduced for huge scenes)."""
    scale = min(scale, (MAX_PIXELS / max(1, scene.width * scene.height)) ** 0.5)
    out_w, out_h = max(1, round(scene.width * scale)), max(1, round(scene.height * scale))
    supersample = max(1, min(4, int((MAX_SUPERSAMPLED / (out_w * out_h)) ** 0.5)))
    k = scale * supersample
    image = Image.new("RGB", (max(1, round(scene.width * k)), max(1, round(scene.height * k))), "white")
    draw = ImageDraw.Draw(image, "RGBA")  # RGBA mode: colors with alpha blend over what is drawn

    def pt(x: float, y: float) -> tuple[float, float]:
        return x * k, y * k

    texts: list[Text] = []
    for s in scene.shapes:
        if isinstance(s, Rect):
            box = [pt(s.x, s.y), pt(s.x + s.w, s.y + s.h)]
            outline = _rgba(s.stroke) if s.stroke else None
            draw.rounded_rectangle(box, radius=s.rx * k, fill=_rgba(s.fill, s.opacity), outline=outline,
                                   width=max(1, round(s.sw * k)) if s.stroke else 0)
        elif isinstance(s, Circle):
            box = [pt(s.x - s.r, s.y - s.r), pt(s.x + s.r, s.y + s.r)]
            draw.ellipse(box, fill=_rgba(s.fill), outline=_rgba(s.stroke) if s.stroke else None,
                         width=max(1, round(s.sw * k)) if s.stroke else 0)
        elif isinstance(s, Stroke):
            points = [pt(x, y) for x, y in bezier(s.points)]
            draw.line(points, fill=_rgba(s.color, s.opacity), width=max(1, round(s.width * k)), joint="curve")
        elif isinstance(s, Polygon):
            draw.polygon([pt(x, y) for x, y in s.points], fill=_rgba(s.fill))
        elif isinstance(s, Text):
            texts.append(s)
    image = image.resize((out_w, out_h), Image.Resampling.LANCZOS)
    # text is drawn at the final size: Pillow hints glyphs for their pixel size
    draw = ImageDraw.Draw(image, "RGBA")
    for t in texts:
        font, symbols = _font(t.size * scale, t.mono, t.bold)
        text = t.text if symbols else t.text.translate(PLAIN)
        if t.rotate:
            _upward(image, t.x * scale, t.y * scale, text, font, t.fill)
        else:
            anchor = {"start": "ls", "middle": "ms", "end": "rs"}[t.anchor]
            draw.text((t.x * scale, t.y * scale), text, fill=_rgba(t.fill), font=font, anchor=anchor)
    buf = BytesIO()
    image.save(buf, format="PNG", optimize=False)
    return buf.getvalue()
