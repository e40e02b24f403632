"""Draw the demo signature and seal PNGs in ceremonies/demo/images/ (obviously fake: "MẪU")."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from signer.appearance import FONT_FILE  # noqa: E402

OUT = ROOT / "ceremonies" / "demo" / "images"
SS = 4  # supersampling factor: draw big, then downscale for smooth edges
BLUE = (20, 50, 160, 255)
RED = (206, 17, 38, 255)


def signature(width: int = 480, height: int = 200) -> Image.Image:
    """A blue handwriting-like flourish: two loops, a long underline, a dot."""
    img = Image.new("RGBA", (width * SS, height * SS), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)

    def stroke(points: list[tuple[float, float]], pen: float) -> None:
        pts = [(x * SS, y * SS) for x, y in points]
        draw.line(pts, fill=BLUE, width=round(pen * SS), joint="curve")
        r = pen * SS / 2
        for x, y in (pts[0], pts[-1]):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=BLUE)

    # main signature: a cursive-like curve (sum of sines along x, loops via a circle term)
    main = []
    for i in range(600):
        t = i / 599
        x = 40 + 330 * t + 28 * math.cos(t * 6 * math.pi)
        y = 105 - 42 * math.sin(t * 6 * math.pi) * (1 - 0.5 * t) - 20 * t
        main.append((x, y))
    stroke(main, 4.5)
    # underline swoosh
    swoosh = [(60 + 380 * t, 150 - 18 * math.sin(t * math.pi) + 10 * t) for t in
              (i / 199 for i in range(200))]
    stroke(swoosh, 3.5)
    # the dot
    stroke([(420, 70), (423, 72)], 7)
    return img.resize((width, height), Image.Resampling.LANCZOS)


def _arc_text(img: Image.Image, text: str, font: ImageFont.FreeTypeFont, centre: float,
              radius: float, top: bool) -> None:
    """Characters along a circle, upright for the reader: clockwise over the top, counter-
    clockwise under the bottom."""
    widths = [font.getlength(ch) for ch in text]
    total = sum(widths) / radius  # arc angle the text spans
    angle = -math.pi / 2 - total / 2 if top else math.pi / 2 + total / 2
    for ch, w in zip(text, widths, strict=True):
        half = w / 2 / radius
        angle = angle + half if top else angle - half
        x = centre + radius * math.cos(angle)
        y = centre + radius * math.sin(angle)
        size = round(font.size * 2)
        glyph = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((size / 2, size / 2), ch, font=font, fill=RED, anchor="mm")
        rotation = -math.degrees(angle) - 90 if top else -math.degrees(angle) + 90
        glyph = glyph.rotate(rotation, resample=Image.Resampling.BICUBIC)
        img.alpha_composite(glyph, (round(x - size / 2), round(y - size / 2)))
        angle = angle + half if top else angle - half


def seal(diameter: int = 360) -> Image.Image:
    """A round red seal of a fictitious agency, with "MẪU" (specimen) in the middle."""
    d = diameter * SS
    c = d / 2
    img = Image.new("RGBA", (d, d), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    for radius, pen in ((c - 2 * SS, 9 * SS), (c - 20 * SS, 3 * SS), (c * 0.52, 3 * SS)):
        draw.ellipse((c - radius, c - radius, c + radius, c + radius), outline=RED, width=pen)
    ring_font = ImageFont.truetype(str(FONT_FILE), 25 * SS)
    text_radius = c - 44 * SS
    _arc_text(img, "CƠ QUAN THỬ NGHIỆM KÝ SỐ", ring_font, c, text_radius, top=True)
    _arc_text(img, "TP. HỒ CHÍ MINH", ring_font, c, text_radius, top=False)
    # a five-pointed star above "MẪU"
    star_r, star_cy = 30 * SS, c - 30 * SS
    points = []
    for k in range(10):
        r = star_r if k % 2 == 0 else star_r * 0.4
        a = -math.pi / 2 + k * math.pi / 5
        points.append((c + r * math.cos(a), star_cy + r * math.sin(a)))
    draw.polygon(points, fill=RED)
    centre_font = ImageFont.truetype(str(FONT_FILE), 44 * SS)
    draw.text((c, c + 34 * SS), "MẪU", font=centre_font, fill=RED, anchor="mm")
    return img.resize((diameter, diameter), Image.Resampling.LANCZOS)


def one_colour(img: Image.Image, colour: tuple[int, int, int, int]) -> Image.Image:
    """Every pixel the ink colour, the shape only in the alpha channel: compresses well."""
    ink = Image.new("RGB", img.size, colour[:3])
    return Image.merge("RGBA", (*ink.split(), img.getchannel("A")))


def save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format="PNG", optimize=True)
    print(f"{path.relative_to(ROOT)}: {img.width}x{img.height}, {path.stat().st_size} bytes")


def main() -> None:
    save(one_colour(signature(), BLUE), OUT / "signature.png")
    save(one_colour(seal(), RED), OUT / "seal.png")


if __name__ == "__main__":
    main()
