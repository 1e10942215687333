"""Draw characters the way a person does on the page: round-pen strokes on a canvas.

Strokes are polylines in canvas pixels (280x280). The pen is round, of even
width, anti-aliased (drawn at 4x and downsampled), dark ink on a transparent
background: what ``canvas.toDataURL()`` sends.
"""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

CANVAS = 280
Stroke = list[tuple[float, float]]

#: Unambiguous characters, drawn plainly.
CLEAR: dict[str, list[Stroke]] = {
    "T": [[(50, 50), (230, 50)], [(140, 50), (140, 235)]],
    "L": [[(95, 45), (95, 235), (205, 235)]],
    "E": [[(200, 45), (85, 45), (85, 235), (200, 235)], [(85, 140), (180, 140)]],
    "H": [[(75, 45), (75, 235)], [(205, 45), (205, 235)], [(75, 140), (205, 140)]],
    "A": [[(55, 235), (140, 45), (225, 235)], [(92, 160), (188, 160)]],
    "X": [[(65, 45), (215, 235)], [(215, 45), (65, 235)]],
    "7": [[(65, 50), (215, 50), (115, 235)]],
    "4": [[(165, 235), (165, 45), (55, 170), (225, 170)]],
}


def draw(strokes: list[Stroke], width: float = 14.0, scale: int = 4,
         colour: tuple[int, int, int] = (20, 20, 20)) -> bytes:
    """PNG bytes of ``strokes`` drawn with a round pen ``width`` canvas pixels wide."""
    big = Image.new("RGBA", (CANVAS * scale, CANVAS * scale), (0, 0, 0, 0))
    pen = ImageDraw.Draw(big)
    w = width * scale
    for stroke in strokes:
        pts = [(x * scale, y * scale) for x, y in stroke]
        pen.line(pts, fill=(*colour, 255), width=round(w), joint="curve")
        for x, y in pts:  # round caps
            pen.ellipse((x - w / 2, y - w / 2, x + w / 2, y + w / 2), fill=(*colour, 255))
    small = big.resize((CANVAS, CANVAS), Image.LANCZOS)
    buf = io.BytesIO()
    small.save(buf, format="PNG")
    return buf.getvalue()
