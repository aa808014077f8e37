#!/usr/bin/env python3
"""Draws Parley's app and tray icons (no dependencies: zlib PNG, PNG-in-ICO, PNG-in-ICNS).

Run from anywhere: `python3 icons/generate.py`. The output is committed; rerun after changing a
colour or shape. Tray variants: idle (grey), connected (green), muted (green, red slash),
deafened (red, dark bar), talking (bright green with an outer ring).
"""

import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
SUPERSAMPLE = 4

GREY = (120, 128, 140)
GREEN = (46, 160, 90)
BRIGHT = (64, 214, 120)
RED = (214, 64, 64)
WHITE = (250, 250, 250)
DARK = (30, 32, 36)


def png(width, height, pixels):
    """pixels: list of rows of (r, g, b, a) tuples."""
    raw = b"".join(b"\x00" + b"".join(struct.pack("BBBB", *p) for p in row) for row in pixels)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def render(size, shapes):
    """Each shape is (inside(x, y) -> bool in unit coordinates, rgb). Later shapes paint over."""
    rows = []
    n = SUPERSAMPLE
    for py in range(size):
        row = []
        for px in range(size):
            acc = [0.0, 0.0, 0.0, 0.0]
            for sy in range(n):
                for sx in range(n):
                    x = (px + (sx + 0.5) / n) / size
                    y = (py + (sy + 0.5) / n) / size
                    colour = None
                    for inside, rgb in shapes:
                        if inside(x, y):
                            colour = rgb
                    if colour is not None:
                        acc[0] += colour[0]
                        acc[1] += colour[1]
                        acc[2] += colour[2]
                        acc[3] += 1
            covered = acc[3]
            if covered:
                row.append((round(acc[0] / covered), round(acc[1] / covered), round(acc[2] / covered), round(255 * covered / (n * n))))
            else:
                row.append((0, 0, 0, 0))
        rows.append(row)
    return png(size, size, rows)


def disc(cx, cy, r):
    return lambda x, y: (x - cx) ** 2 + (y - cy) ** 2 <= r * r


def ring(cx, cy, r_in, r_out):
    return lambda x, y: r_in * r_in <= (x - cx) ** 2 + (y - cy) ** 2 <= r_out * r_out


def rect(x0, y0, x1, y1):
    return lambda x, y: x0 <= x <= x1 and y0 <= y <= y1


def rounded_rect(x0, y0, x1, y1, r):
    def inside(x, y):
        if not (x0 <= x <= x1 and y0 <= y <= y1):
            return False
        cx = min(max(x, x0 + r), x1 - r)
        cy = min(max(y, y0 + r), y1 - r)
        return (x - cx) ** 2 + (y - cy) ** 2 <= r * r

    return inside


def slash(width):
    # From top-right to bottom-left across the disc.
    return lambda x, y: abs((x + y) - 1.0) / math.sqrt(2) <= width / 2 and (x - 0.5) ** 2 + (y - 0.5) ** 2 <= 0.42**2


def microphone(colour):
    """A microphone glyph: capsule, cradle and stand."""
    return [
        (rounded_rect(0.40, 0.22, 0.60, 0.56, 0.10), colour),
        (lambda x, y: 0.16 ** 2 <= (x - 0.5) ** 2 + (y - 0.46) ** 2 <= 0.205 ** 2 and y >= 0.46, colour),
        (rect(0.475, 0.64, 0.525, 0.76), colour),
        (rounded_rect(0.38, 0.74, 0.62, 0.79, 0.02), colour),
    ]


def tray(variant):
    base = {"idle": GREY, "connected": GREEN, "muted": GREEN, "deafened": RED, "talking": BRIGHT}[variant]
    shapes = []
    if variant == "talking":
        shapes.append((ring(0.5, 0.5, 0.44, 0.5), BRIGHT))
        shapes.append((disc(0.5, 0.5, 0.40), base))
    else:
        shapes.append((disc(0.5, 0.5, 0.48), base))
    shapes += microphone(WHITE)
    if variant == "muted":
        shapes.append((slash(0.11), RED))
    if variant == "deafened":
        shapes.append((rect(0.16, 0.45, 0.84, 0.55), DARK))
    return shapes


def app_icon():
    return [(rounded_rect(0.04, 0.04, 0.96, 0.96, 0.22), GREEN)] + microphone(WHITE)


def ico(images):
    """PNG-compressed ICO (Windows Vista and later)."""
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = 6 + 16 * len(images)
    entries = b""
    data = b""
    for size, blob in images:
        entries += struct.pack("<BBBBHHII", size % 256, size % 256, 0, 0, 1, 32, len(blob), offset + len(data))
        data += blob
    return header + entries + data


def icns(images):
    """ICNS with PNG payloads: ic07 (128), ic08 (256), ic09 (512)."""
    kinds = {128: b"ic07", 256: b"ic08", 512: b"ic09"}
    body = b"".join(kinds[size] + struct.pack(">I", 8 + len(blob)) + blob for size, blob in images if size in kinds)
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def write(name, blob):
    with open(os.path.join(HERE, name), "wb") as handle:
        handle.write(blob)


def main():
    for variant in ["idle", "connected", "muted", "deafened", "talking"]:
        write(f"tray-{variant}.png", render(32, tray(variant)))
    sizes = {}
    for size in [32, 128, 256, 512]:
        sizes[size] = render(size, app_icon())
    write("32x32.png", sizes[32])
    write("128x128.png", sizes[128])
    write("128x128@2x.png", sizes[256])
    write("icon.png", sizes[512])
    write("icon.ico", ico([(32, sizes[32]), (128, sizes[128]), (256, sizes[256])]))
    write("icon.icns", icns([(128, sizes[128]), (256, sizes[256]), (512, sizes[512])]))


if __name__ == "__main__":
    main()
