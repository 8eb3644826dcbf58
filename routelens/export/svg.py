"""A scene (drawing.py) as a standalone SVG document; rotated labels as `rotate(-90 x y)`."""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from .drawing import Circle, Polygon, Rect, Scene, Stroke, Text
from .labels import MONO, SANS


def _f(v: float) -> str:
    return f"{round(v, 2):g}"


def _paint(fill: str, stroke: str | None, sw: float, dash: bool, kind: str | None = None) -> str:
    out = f' data-kind="{kind}" fill="{fill}"' if kind else f' fill="{fill}"'
    if stroke:
        out += f' stroke="{stroke}" stroke-width="{_f(sw)}"'
    if dash:
        out += ' stroke-dasharray="2 1.5"'
    return out


def to_svg(scene: Scene) -> str:
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{scene.width}" height="{scene.height}" '
        f'viewBox="0 0 {scene.width} {scene.height}" font-family={quoteattr(SANS)} font-size="11">',
        f"<title>{escape(scene.title)}</title>",
    ]
    for s in scene.shapes:
        if isinstance(s, Rect):
            rx = f' rx="{_f(s.rx)}"' if s.rx else ""
            op = f' opacity="{_f(s.opacity)}"' if s.opacity != 1 else ""
            parts.append(f'<rect x="{_f(s.x)}" y="{_f(s.y)}" width="{_f(s.w)}" height="{_f(s.h)}"{rx}{op}'
                         f'{_paint(s.fill, s.stroke, s.sw, s.dash, s.kind)}/>')
        elif isinstance(s, Circle):
            parts.append(f'<circle cx="{_f(s.x)}" cy="{_f(s.y)}" r="{_f(s.r)}"{_paint(s.fill, s.stroke, s.sw, s.dash, s.kind)}/>')
        elif isinstance(s, Stroke):
            p = s.points
            d = f"M{_f(p[0][0])},{_f(p[0][1])}" + (
                f"L{_f(p[1][0])},{_f(p[1][1])}" if len(p) == 2 else "C" + " ".join(f"{_f(x)},{_f(y)}" for x, y in p[1:])
            )
            op = f' stroke-opacity="{s.opacity:.3f}"' if s.opacity != 1 else ""
            kind = f' data-kind="{s.kind}"' if s.kind else ""
            parts.append(f'<path{kind} d="{d}" fill="none" stroke="{s.color}" stroke-width="{s.width:.2f}"{op} stroke-linecap="round"/>')
        elif isinstance(s, Polygon):
            parts.append(f'<path d="M{"L".join(f"{_f(x)},{_f(y)}" for x, y in s.points)}Z" fill="{s.fill}"/>')
        elif isinstance(s, Text):
            extra = f' font-size="{_f(s.size)}"' if s.size != 11 else ""
            extra += ' font-weight="700"' if s.bold else ""
            extra += f" font-family={quoteattr(MONO)}" if s.mono else ""
            anchor = f' text-anchor="{s.anchor}"' if s.anchor != "start" else ""
            if s.rotate:  # reads upward from (x, y), centred across
                extra += f' transform="rotate(-90 {_f(s.x)} {_f(s.y)})" dominant-baseline="central"'
            text = f'<text x="{_f(s.x)}" y="{_f(s.y)}" fill="{s.fill}"{anchor}{extra}>{escape(s.text)}</text>'
            # a tip (a token's full label and bytes) on hover: a group's title, the text left alone
            parts.append(f"<g><title>{escape(s.tip)}</title>{text}</g>" if s.tip else text)
    parts.append("</svg>")
    return "\n".join(parts)
