"""A validation curve picture from runs' TensorBoard events: a metric against wall-clock minutes.

    python tools/curves_figure.py runs/camvid-u-net-long runs/camvid-seg-net-long --out docs/camvid-curves.png
    python tools/curves_figure.py RUN_DIR... --out curves.png --tag val/mean_iu --labels U-Net SegNet

One line per run folder, read from its events files (several files, as a resumed run
writes, are joined). Minutes count from the run's first event (written when training
starts, after the data set and model are built), so the x axis is the wall time a
reader of the run's log would measure; a resumed run's pause is kept. The legend gives
each run's last and best value. Drawn with PIL only (no plotting library in the
requirements).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import argparse

from PIL import Image, ImageDraw

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75)]
SIZE, MARGIN = (640, 400), (52, 16, 20, 36)  # width, height; left, top, right, bottom


def read_curve(run_dir: Path, tag: str) -> list[tuple[float, float]]:
    """(minutes since the run's first event, value) of every `tag` scalar in the run's events files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(run_dir.glob("events.out.tfevents.*"))
    if not files:
        raise SystemExit(f"curves_figure.py: no TensorBoard events files in {run_dir}")
    start, points = None, []
    for path in files:
        events = EventAccumulator(str(path), size_guidance={"scalars": 0})
        events.Reload()
        start = events.FirstEventTimestamp() if start is None else start
        if tag in events.Tags()["scalars"]:
            points += [(e.wall_time, e.value) for e in events.Scalars(tag)]
    if not points:
        raise SystemExit(f"curves_figure.py: {run_dir} holds no {tag!r} scalars")
    return [((wall - start) / 60, value) for wall, value in sorted(points)]


def draw_curves(curves: list[tuple[str, list[tuple[float, float]]]], tag: str) -> Image.Image:
    picture = Image.new("RGB", SIZE, (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    left, top, right, bottom = MARGIN[0], MARGIN[1], SIZE[0] - MARGIN[2], SIZE[1] - MARGIN[3]
    x_max = max(x for _, points in curves for x, _ in points) or 1.0
    y_max = max(1e-6, max(y for _, points in curves for _, y in points))
    y_max = min(1.0, round(y_max * 1.1 + 0.05, 1)) if y_max <= 1 else y_max * 1.1

    def to_pixel(x: float, y: float) -> tuple[float, float]:
        return left + (right - left) * x / x_max, bottom - (bottom - top) * y / y_max

    for k in range(6):  # grid and tick labels
        y = y_max * k / 5
        _, py = to_pixel(0, y)
        draw.line([(left, py), (right, py)], fill=(225, 225, 225))
        draw.text((4, py - 6), f"{y:.2f}", fill=(0, 0, 0))
        x = x_max * k / 5
        px, _ = to_pixel(x, 0)
        draw.text((px - 8, bottom + 4), f"{x:.0f}", fill=(0, 0, 0))
    draw.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    draw.text(((left + right) // 2 - 60, bottom + 18), "wall-clock minutes", fill=(0, 0, 0))
    for index, (label, points) in enumerate(curves):
        colour = COLOURS[index % len(COLOURS)]
        pixels = [to_pixel(x, y) for x, y in points]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for px, py in pixels:
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)
        legend_y = top + 6 + 14 * index
        draw.line([(left + 8, legend_y + 6), (left + 28, legend_y + 6)], fill=colour, width=2)
        draw.text((left + 34, legend_y), f"{label}: {tag} {points[-1][1]:.3f} at {points[-1][0]:.0f} min "
                                         f"(best {max(y for _, y in points):.3f})", fill=(0, 0, 0))
    return picture


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run folders holding TensorBoard events")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--tag", default="val/mean_iu", help="the scalar to draw")
    parser.add_argument("--labels", nargs="+", default=None, help="one legend label per run (default: folder names)")
    args = parser.parse_args(argv)
    labels = args.labels or [Path(run).name for run in args.runs]
    if len(labels) != len(args.runs):
        parser.error(f"--labels gives {len(labels)} labels for {len(args.runs)} runs")
    curves = [(label, read_curve(Path(run), args.tag)) for label, run in zip(labels, args.runs)]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_curves(curves, args.tag).save(out)
    print(f"wrote {out}: {args.tag} of {', '.join(labels)}")
    return out


if __name__ == "__main__":
    main()
