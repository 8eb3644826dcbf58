"""Layers x heads heatmaps of an analysis, as SVG or PNG (Pillow): one panel per label plus all
prompts together, the last layer on top as in the route graph, one colour scale for all panels."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from io import BytesIO
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont

CELL, GAP, PAD, TOP, LEFT = 14, 28, 12, 40, 34
LOW, HIGH = (247, 251, 255), (8, 48, 107)  # a sequential blue: 0 -> the largest value


@dataclass
class Panel:
    title: str
    values: torch.Tensor  # [layers, heads]


def colour(v: float, top: float) -> tuple[int, int, int]:
    t = 0.0 if top <= 0 else max(0.0, min(1.0, v / top)) ** 0.6
    return tuple(round(a + (b - a) * t) for a, b in zip(LOW, HIGH))  # type: ignore[return-value]


def _layout(panels: list[Panel]) -> tuple[int, int, list[int]]:
    layers, heads = panels[0].values.shape
    w = heads * CELL
    xs = [LEFT + i * (w + GAP) for i in range(len(panels))]
    return xs[-1] + w + PAD, TOP + layers * CELL + 30, xs


def svg(panels: list[Panel], title: str) -> str:
    width, height, xs = _layout(panels)
    layers, heads = panels[0].values.shape
    top = max(float(p.values.max()) for p in panels)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
           'font-family="DejaVu Sans, Arial, sans-serif">', f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="{PAD}" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    for x0, panel in zip(xs, panels):
        out.append(f'<text x="{x0}" y="{TOP - 8}" font-size="11">{escape(panel.title)}</text>')
        for layer in range(layers):
            y = TOP + (layers - 1 - layer) * CELL
            for head in range(heads):
                v = float(panel.values[layer, head])
                r, g, b = colour(v, top)
                out.append(f'<rect x="{x0 + head * CELL}" y="{y}" width="{CELL - 1}" height="{CELL - 1}" '
                           f'fill="rgb({r},{g},{b})"><title>{escape(panel.title)}: L{layer} H{head} {v:.4f}</title></rect>')
    for layer in range(0, layers, 5):
        y = TOP + (layers - 1 - layer) * CELL + CELL - 3
        out.append(f'<text x="{LEFT - 4}" y="{y}" font-size="9" text-anchor="end">L{layer}</text>')
    out.append(f'<text x="{LEFT}" y="{height - 10}" font-size="10">heads 0..{heads - 1} left to right; darker: '
               f'larger (top {top:.3g})</text></svg>')
    return "\n".join(out)


def png(panels: list[Panel], title: str, scale: int = 2) -> bytes:
    width, height, xs = _layout(panels)
    layers, heads = panels[0].values.shape
    top = max(float(p.values.max()) for p in panels)
    img = Image.new("RGB", (width * scale, height * scale), "white")
    draw = ImageDraw.Draw(img)
    font = _font(11 * scale)
    draw.text((PAD * scale, 4 * scale), title, fill="black", font=_font(13 * scale))
    for x0, panel in zip(xs, panels):
        draw.text((x0 * scale, (TOP - 20) * scale), panel.title, fill="black", font=font)
        for layer in range(layers):
            y = TOP + (layers - 1 - layer) * CELL
            for head in range(heads):
                box = [(x0 + head * CELL) * scale, y * scale, (x0 + head * CELL + CELL - 1) * scale - 1, (y + CELL - 1) * scale - 1]
                draw.rectangle(box, fill=colour(float(panel.values[layer, head]), top))
    for layer in range(0, layers, 5):
        draw.text((4 * scale, (TOP + (layers - 1 - layer) * CELL) * scale), f"L{layer}", fill="black", font=_font(9 * scale))
    draw.text((LEFT * scale, (height - 22) * scale), f"heads 0..{heads - 1} left to right; darker: larger (top {top:.3g})",
              fill="black", font=_font(10 * scale))
    buf = BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _font(size: int) -> ImageFont.ImageFont:
    for path in ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf"):
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default()


def write(panels: list[Panel], title: str, path: str | Path) -> Path:
    """Write the heatmap; the extension picks SVG or PNG."""
    path = Path(path)
    if path.suffix.lower() == ".svg":
        path.write_text(svg(panels, title))
    elif path.suffix.lower() == ".png":
        path.write_bytes(png(panels, title))
    else:
        from ..errors import InvalidArgumentError

        raise InvalidArgumentError(f"a heatmap is written as .svg or .png, not {path.suffix or 'no extension'}")
    return path
