"""Backdrops for storyboard frames: a setting drawn under its time of day and weather.

:func:`draw_backdrop` paints the sky (its colours from the time of day, dimmed
by rain, greyed by fog), the sun or the moon, and the setting's shapes: a
skyline for a city, a sea horizon and a shore for a coast, trees for a forest,
ranges for mountains, dunes for a desert, walls and a window for an interior,
hills for a field. :func:`draw_atmosphere` adds fog banks, and
:func:`draw_precipitation` rain streaks or snowflakes over everything. Every
random choice comes from the generator it is given, so the same scene, seed
and size give the same pixels. Pillow and numpy only.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from sparkle_motion_dagster.film.scene import Scene

RGB = tuple[int, int, int]

# Sky colours (top, horizon) and how bright the land is, by time of day.
SKY = {"dawn": ((70, 82, 150), (250, 172, 112)), "day": ((80, 145, 225), (205, 228, 248)),
       "dusk": ((48, 40, 100), (238, 118, 70)), "night": ((6, 8, 24), (28, 38, 72))}
LIGHT = {"dawn": 0.85, "day": 1.0, "dusk": 0.7, "night": 0.32}
# The horizon's height (a fraction of the frame, from the top) and the ground's colour, by setting.
HORIZON = {"city": 0.64, "coast": 0.48, "forest": 0.66, "mountain": 0.62, "desert": 0.58, "interior": 0.7,
           "field": 0.6}
GROUND = {"city": (70, 70, 76), "coast": (206, 186, 140), "forest": (54, 78, 42), "mountain": (104, 98, 92),
          "desert": (218, 178, 112), "interior": (116, 84, 58), "field": (92, 146, 62)}
FOG = (196, 200, 206)


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return tuple(int(round(x * (1 - t) + y * t)) for x, y in zip(a, b))


def _scale(color: RGB, k: float) -> RGB:
    return tuple(int(max(0, min(255, c * k))) for c in color)


def _weathered(color: RGB, scene: Scene) -> RGB:
    """A colour as the weather shows it: greyer and darker in rain, paler in fog and snow."""
    grey = sum(color) // 3
    if scene.weather == "rain":
        return _scale(_mix(color, (grey, grey, grey + 8), 0.5), 0.62)
    if scene.weather == "fog":
        return _mix(color, _scale(FOG, max(0.35, LIGHT[scene.time])), 0.55)
    if scene.weather == "snow":
        return _mix(color, (grey + 20, grey + 20, grey + 30), 0.35)
    return color


def horizon_row(scene: Scene, rng: np.random.Generator, height: int) -> int:
    """Where the land meets the sky (the floor meets the wall, indoors)."""
    return int((HORIZON[scene.setting] + rng.uniform(-0.025, 0.025)) * height)


def footing_row(scene: Scene, horizon: int, height: int) -> int:
    """Where people in the foreground stand: on the shore (below the sea) on a coast, else a little
    below the horizon."""
    return int(horizon + (height - horizon) * (0.62 if scene.setting == "coast" else 0.3))


def _gradient(top: RGB, bottom: RGB, rows: int, width: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, max(rows, 1), dtype=np.float32)[:, None, None]
    column = np.array(top, np.float32) * (1 - t) + np.array(bottom, np.float32) * t
    return np.broadcast_to(column, (max(rows, 1), width, 3))[:rows]


def draw_backdrop(scene: Scene, rng: np.random.Generator, width: int, height: int) -> tuple[Image.Image, int]:
    """The scene without people: (the picture, its horizon row)."""
    horizon = horizon_row(scene, rng, height)
    light = LIGHT[scene.time]
    top, low = (_weathered(c, scene) for c in SKY[scene.time])
    ground = GROUND[scene.setting]
    if scene.weather == "snow" and scene.setting != "interior":
        ground = (232, 236, 242)
    near, far = _weathered(_scale(ground, light * 0.75), scene), _weathered(_scale(ground, light), scene)
    pixels = np.concatenate([_gradient(top, low, horizon, width), _gradient(far, near, height - horizon, width)])
    image = Image.fromarray(np.ascontiguousarray(pixels.astype(np.uint8)), "RGB")
    draw = ImageDraw.Draw(image, "RGBA")
    if scene.setting != "interior":
        _sky_light(draw, scene, rng, width, height, horizon)
    {"city": _city, "coast": _coast, "forest": _forest, "mountain": _mountains, "desert": _desert,
     "interior": _interior, "field": _field}[scene.setting](draw, scene, rng, width, height, horizon)
    return image, horizon


def _sky_light(draw, scene, rng, width, height, horizon) -> None:
    """The sun (low and warm at dawn and dusk, high by day) or the moon and stars by night."""
    x = rng.uniform(0.15, 0.85) * width
    if scene.time == "night":
        if scene.weather == "clear":
            for _ in range(int(width * 0.12)):
                sx, sy = rng.uniform(0, width), rng.uniform(0, horizon * 0.85)
                draw.point((sx, sy), fill=(230, 230, 255, int(rng.uniform(120, 255))))
        r = height * 0.05
        glow = 110 if scene.weather == "clear" else 40
        draw.ellipse((x - r, height * 0.14 - r, x + r, height * 0.14 + r), fill=(232, 232, 214, glow + 100))
        return
    if scene.weather in ("rain", "snow"):
        return  # an overcast sky hides the sun
    y = {"dawn": horizon - height * 0.02, "day": height * 0.14, "dusk": horizon - height * 0.05}[scene.time]
    colour = {"dawn": (255, 214, 150), "day": (255, 250, 225), "dusk": (255, 140, 80)}[scene.time]
    faint = 0.45 if scene.weather == "fog" else 1.0
    for radius, alpha in ((0.2, 35), (0.12, 60), (0.06, 230)):
        r = radius * height
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(*colour, int(alpha * faint)))


def _city(draw, scene, rng, width, height, horizon) -> None:
    """A skyline of blocks with windows (lit at dusk and night), then a street with its kerb."""
    shade = _weathered(_scale((118, 120, 134), LIGHT[scene.time] * 0.8), scene)
    lit = scene.time in ("dusk", "night")
    x = 0
    while x < width:
        w, h = rng.uniform(0.05, 0.13) * width, rng.uniform(0.12, 0.5) * height
        draw.rectangle((x, horizon - h, x + w, horizon), fill=(*shade, 255))
        for wy in np.arange(horizon - h + height * 0.03, horizon - height * 0.02, height * 0.045):
            for wx in np.arange(x + w * 0.15, x + w * 0.8, w * 0.25):
                on = rng.random() < (0.55 if lit else 0.2)
                colour = (255, 214, 120, 230) if lit and on else (*_scale(shade, 1.35), 200)
                draw.rectangle((wx, wy, wx + w * 0.12, wy + height * 0.018), fill=colour)
        x += w + rng.uniform(0, 0.015) * width
    draw.rectangle((0, horizon, width, horizon + height * 0.025), fill=(*_scale(shade, 1.2), 255))
    for lx in np.arange(rng.uniform(0, 0.1) * width, width, width * 0.18):  # lane marks
        y = horizon + (height - horizon) * 0.55
        draw.rectangle((lx, y, lx + width * 0.07, y + height * 0.008), fill=(220, 220, 200, 160))


def _coast(draw, scene, rng, width, height, horizon) -> None:
    """The sea to a straight horizon, its waves, the sun's path on the water, and a sandy shore."""
    sky_low = _weathered(SKY[scene.time][1], scene)
    sea = _mix(sky_low, _weathered(_scale((28, 72, 120), LIGHT[scene.time] + 0.15), scene), 0.6)
    shore = horizon + int((height - horizon) * 0.42)
    draw.rectangle((0, horizon, width, shore), fill=(*sea, 255))
    for _ in range(int(width * 0.05)):
        wx, wy = rng.uniform(0, width), rng.uniform(horizon + 2, shore)
        draw.line((wx, wy, wx + width * rng.uniform(0.02, 0.06), wy), fill=(*_scale(sea, 1.3), 150), width=1)
    if scene.time in ("dawn", "dusk") and scene.weather == "clear":
        draw.polygon([(width * 0.45, horizon), (width * 0.55, horizon), (width * 0.62, shore), (width * 0.38, shore)],
                     fill=(255, 190, 120, 70))
    draw.line((0, horizon, width, horizon), fill=(*_scale(sea, 0.8), 255), width=max(1, height // 180))
    path = _scale(GROUND["coast"], LIGHT[scene.time] * 1.1)
    draw.polygon([(width * 0.46, shore), (width * 0.54, shore), (width * 0.8, height), (width * 0.2, height)],
                 fill=(*_weathered(path, scene), 200))


def _tree(draw, x, base, size, canopy: RGB, trunk: RGB, pine: bool) -> None:
    draw.rectangle((x - size * 0.06, base - size * 0.45, x + size * 0.06, base), fill=(*trunk, 255))
    if pine:
        for tier in range(3):
            top = base - size * (1.0 - tier * 0.18)
            draw.polygon([(x, top), (x - size * (0.22 + tier * 0.06), top + size * 0.38),
                          (x + size * (0.22 + tier * 0.06), top + size * 0.38)], fill=(*canopy, 255))
    else:
        draw.ellipse((x - size * 0.3, base - size, x + size * 0.3, base - size * 0.35), fill=(*canopy, 255))


def _forest(draw, scene, rng, width, height, horizon) -> None:
    """Two rows of trees, the far one paler, the near one framing the sides."""
    light = LIGHT[scene.time]
    for row, (count, scale, tone) in enumerate(((16, 0.32, 0.75), (7, 0.62, 0.5))):
        canopy = _weathered(_scale((44, 92, 52), light * tone * 1.4), scene)
        trunk = _weathered(_scale((72, 52, 36), light * tone * 1.3), scene)
        for index in range(count):
            x = (index + rng.uniform(0.1, 0.9)) / count * width
            if row and width * 0.3 < x < width * 0.7:
                x = x * 0.35 if x < width / 2 else width - (width - x) * 0.35  # keep the middle open
            base = horizon + (height - horizon) * (0.05 + 0.35 * row) + rng.uniform(0, 0.03) * height
            _tree(draw, x, base, height * scale * rng.uniform(0.8, 1.2), canopy, trunk, pine=rng.random() < 0.6)


def _ranges(draw, rng, width, horizon, peak_height, colour: RGB, snowcaps: bool) -> None:
    points, x = [(0, horizon)], 0.0
    while x < width:
        x += rng.uniform(0.08, 0.2) * width
        points.append((x, horizon - rng.uniform(0.35, 1.0) * peak_height))
    points.append((width, horizon))
    draw.polygon(points, fill=(*colour, 255))
    if snowcaps:
        for px, py in points[1:-1]:
            depth = (horizon - py) * 0.25
            draw.polygon([(px, py), (px - depth * 0.8, py + depth), (px + depth * 0.8, py + depth)],
                         fill=(238, 240, 246, 235))


def _mountains(draw, scene, rng, width, height, horizon) -> None:
    """Jagged ranges, the far one bluer and paler, the near one snow-capped."""
    light = LIGHT[scene.time]
    _ranges(draw, rng, width, horizon, height * 0.42, _weathered(_scale((120, 130, 160), light), scene), False)
    _ranges(draw, rng, width, horizon, height * 0.3, _weathered(_scale((82, 80, 92), light), scene), True)


def _desert(draw, scene, rng, width, height, horizon) -> None:
    """Dunes as rolling sand ridges, each nearer one darker."""
    for index, tone in enumerate((1.05, 0.92, 0.8)):
        colour = _weathered(_scale(GROUND["desert"], LIGHT[scene.time] * tone), scene)
        base = horizon + (height - horizon) * index * 0.3
        phase, wave = rng.uniform(0, 6.3), rng.uniform(1.2, 2.4)
        xs = np.linspace(0, width, 40)
        ridge = [(x, base - height * 0.06 * (1 + np.sin(phase + wave * x / width * 6.3))) for x in xs]
        draw.polygon([(0, height), *ridge, (width, height)], fill=(*colour, 255))


def _interior(draw, scene, rng, width, height, horizon) -> None:
    """A wall with a window (the sky outside shows the time of day) over a wooden floor."""
    light = max(0.55, LIGHT[scene.time])
    wall = _scale((168, 142, 116), light)
    draw.rectangle((0, 0, width, horizon), fill=(*wall, 255))
    wx, wy, ww, wh = rng.uniform(0.08, 0.55) * width, height * 0.12, width * 0.3, height * 0.34
    top, low = (_weathered(c, scene) for c in SKY[scene.time])
    for row in range(int(wh)):
        draw.line((wx, wy + row, wx + ww, wy + row), fill=(*_mix(top, low, row / max(wh, 1)), 255))
    frame = _scale(wall, 0.55)
    draw.rectangle((wx, wy, wx + ww, wy + wh), outline=(*frame, 255), width=max(2, height // 90))
    draw.line((wx + ww / 2, wy, wx + ww / 2, wy + wh), fill=(*frame, 255), width=max(2, height // 120))
    for fx in np.arange(0, width, width / 9):  # floorboards
        draw.line((width / 2 + (fx - width / 2) * 0.4, horizon, fx, height),
                  fill=(*_scale(GROUND["interior"], 0.7), 160))
    if scene.time in ("dusk", "night"):
        lx = width * 0.85
        draw.ellipse((lx - height * 0.2, height * 0.15, lx + height * 0.2, height * 0.55), fill=(255, 210, 140, 60))


def _field(draw, scene, rng, width, height, horizon) -> None:
    """Rolling hills, the far one paler, and a line of fence posts."""
    for index, tone in enumerate((1.15, 0.95)):
        colour = _weathered(_scale(GROUND["field"], LIGHT[scene.time] * tone), scene)
        if scene.weather == "snow":
            colour = _scale((232, 236, 242), LIGHT[scene.time] * tone)
        base = horizon + (height - horizon) * index * 0.25
        phase = rng.uniform(0, 6.3)
        xs = np.linspace(0, width, 30)
        ridge = [(x, base - height * 0.05 * (1 + np.sin(phase + x / width * 5))) for x in xs]
        draw.polygon([(0, height), *ridge, (width, height)], fill=(*colour, 255))
    post = _scale((90, 70, 50), LIGHT[scene.time])
    y = horizon + (height - horizon) * 0.45
    for px in np.arange(rng.uniform(0, 0.05) * width, width, width * 0.08):
        draw.rectangle((px, y - height * 0.05, px + width * 0.006, y), fill=(*post, 230))
    draw.line((0, y - height * 0.035, width, y - height * 0.035), fill=(*post, 200), width=max(1, height // 200))


def draw_atmosphere(image: Image.Image, scene: Scene, horizon: int) -> Image.Image:
    """Fog: a pale veil over the whole frame, thickest along the horizon (nothing for other weather)."""
    if scene.weather != "fog":
        return image
    height = image.height
    rows = np.arange(height, dtype=np.float32)
    alpha = 0.3 + 0.45 * np.exp(-(((rows - horizon) / (0.16 * height)) ** 2))
    fog = np.array(_scale(FOG, max(0.35, LIGHT[scene.time])), np.float32)
    pixels = np.asarray(image, np.float32)
    pixels = pixels * (1 - alpha[:, None, None]) + fog * alpha[:, None, None]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def draw_precipitation(image: Image.Image, scene: Scene, rng: np.random.Generator) -> None:
    """Rain as slanted streaks, snow as flakes, over the whole frame (in place)."""
    if scene.weather not in ("rain", "snow"):
        return
    width, height = image.size
    draw = ImageDraw.Draw(image, "RGBA")
    if scene.weather == "rain":
        for _ in range(int(width * 0.3)):
            x, y = rng.uniform(0, width * 1.1), rng.uniform(-0.1, 1.0) * height
            length = rng.uniform(0.04, 0.09) * height
            draw.line((x, y, x - length * 0.25, y + length), fill=(200, 212, 235, 120), width=1)
        return
    for _ in range(int(width * 0.25)):
        x, y, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(0.6, 2.2) * max(1, height / 360)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(250, 250, 255, 210))
