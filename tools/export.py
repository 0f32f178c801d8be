"""Export a checkpoint's network to ONNX, to run it without this repository (onnxruntime, TensorRT, ...).

    python tools/export.py runs/shapes-u-net-demo/best.pth --out shapes-u-net.onnx
    python tools/export.py CKPT --out model.onnx --height 512 --width 1024   # one fixed size

The graph takes the image as it comes: input `image`, float32 RGB values 0..255, shape
(N, 3, H, W); the checkpoint's input normalisation is inside it. It returns `logits`,
float32 (N, classes, H, W) at the input's size; argmax over axis 1 gives class ids.
Batch, height and width are free in the graph wherever the network allows it; a network
with an operation that fixes the size is refused with the reason, and is exported for one
size with --height and --width. The graph is the network alone, as eval.py's --mode whole at
scale 1 (no sliding window, test-time scales, flips or resizing).

After writing, the file is run with onnxruntime (when installed: it is not needed to export)
on random images, at two sizes when they are free, and the largest difference from
PyTorch's logits is printed. See docs/export.md.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

import argparse

from utils.predictor import Predictor
from utils.onnx_export import (INPUT_NAME, OPSET, OUTPUT_NAME, RELATIVE_TOLERANCE, RawImageModel, agrees,
                               export_onnx, max_difference, onnxruntime_session, trace_size)

FIXED_SIZE_HELP = ("An operation of the network fixes the input size in the graph (adaptive pooling whose bins "
                   "must divide the feature map, a branch taken on the input's size, ...)")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a best.pth or last.pth written by a training script")
    parser.add_argument("--out", required=True, help="the ONNX file to write (FILE.onnx)")
    parser.add_argument("--height", type=int, default=None,
                        help="export for this input height only (with --width); default: height and width free")
    parser.add_argument("--width", type=int, default=None, help="export for this input width only (with --height)")
    parser.add_argument("--opset", type=int, default=OPSET, help="ONNX opset version")
    parser.add_argument("--no-check", dest="check", action="store_false",
                        help="do not run the file with onnxruntime afterwards")
    args = parser.parse_args(argv)
    if (args.height is None) != (args.width is None):
        parser.error("--height and --width go together: give both for a fixed size, or neither")
    for name in ("height", "width"):
        value = getattr(args, name)
        if value is not None and value < 8:
            parser.error(f"--{name} must be at least 8 pixels, got {value}")
    if Path(args.out).suffix.lower() != ".onnx":
        parser.error(f"--out {args.out}: expected a file name ending in .onnx")
    if not Path(args.out).resolve().parent.is_dir():
        parser.error(f"--out {args.out}: the folder {Path(args.out).resolve().parent} does not exist")
    return args


def crop_of(train_config: dict) -> tuple[int, int]:
    crop = train_config.get("crop_size", 512)
    return (crop, crop) if isinstance(crop, int) else (int(crop[0]), int(crop[1]))


def differs_from_whole_image(train_config: dict) -> list[str]:
    """The checkpoint's validation settings that the graph (the network alone) does not apply."""
    notes = []
    if train_config.get("val_mode") == "slide":
        notes.append(f"sliding windows of {train_config.get('val_tile')}")
    if train_config.get("val_protocol", "default") != "default":
        notes.append(f"the {train_config['val_protocol']} protocol")
    if train_config.get("val_base_size"):
        notes.append(f"a resize of the shorter side to {train_config['val_base_size']}")
    scales = [float(x) for x in train_config.get("val_scales", (1.0,))]
    if scales != [1.0]:
        notes.append(f"test-time scales {scales}")
    if train_config.get("val_flip"):
        notes.append("flipped copies")
    if train_config.get("val_mirror_margin"):
        notes.append(f"a mirror margin of {train_config['val_mirror_margin']} pixels")
    return notes


def main(argv=None) -> Path:
    args = parse_args(argv)
    # the network alone, in float32 and the default memory format, whatever the run validated with
    predictor = Predictor.from_checkpoint(args.checkpoint, "cpu", "export.py", amp=False, channels_last=False)
    state = predictor.checkpoint
    model = RawImageModel(predictor.model, predictor.input_norm).eval()
    out = Path(args.out)
    dynamic = args.height is None
    size = trace_size(*crop_of(state["config"])) if dynamic else (args.height, args.width)
    try:
        export_onnx(model, out, size, dynamic, args.opset)
    except ImportError as err:
        raise SystemExit(f"export.py: {err}") from None
    except Exception as err:  # the exporter's errors have no common base class
        if not dynamic:
            raise SystemExit(f"export.py: cannot export {state['model']} at {size[0]} x {size[1]}: {err}") from None
        raise SystemExit(f"export.py: {state['model']} cannot be exported with a free height and width: "
                         f"{str(err).splitlines()[0]}. {FIXED_SIZE_HELP}: export it for the size you will run "
                         f"it at, with --height H --width W.") from None
    free = "batch, height and width free" if dynamic else f"batch free, height {size[0]}, width {size[1]}"
    print(f"wrote {out} ({out.stat().st_size / 2 ** 20:.1f} MiB, opset {args.opset}): {state['model']} "
          f"{state.get('model_kwargs') or ''} for {state.get('dataset')}")
    print(f"  input  '{INPUT_NAME}': float32 RGB 0..255, (N, 3, H, W), {free}; normalisation inside the graph")
    print(f"  output '{OUTPUT_NAME}': float32 (N, {state['num_classes']}, H, W); classes: {', '.join(state['classes'])}")
    notes = differs_from_whole_image(state["config"])
    if notes:
        print(f"  note: the checkpoint's own validation uses {', '.join(notes)}; the graph is the network alone "
              f"(eval.py --mode whole at scale 1), so apply those around it")
    if args.check:
        check(out, model, state, size, dynamic)
    return out


def check(path: Path, model: RawImageModel, state: dict, size: tuple[int, int], dynamic: bool) -> None:
    """Run the file with onnxruntime and print the largest difference from PyTorch; when height and
    width are free, at a second size too, and a graph that is wrong there is removed."""
    try:
        session = onnxruntime_session(path)
    except ImportError as err:
        print(f"  not checked: {err}")
        return
    sizes = [size]
    if dynamic:
        crop = crop_of(state["config"])
        sizes.append(crop if crop != size else (size[0] + 6, size[1] + 10))
    for height, width in sizes:
        try:
            difference, scale = max_difference(session, model, (height, width), batch=2)
        except Exception as err:  # onnxruntime's failures are plain RuntimeErrors or its own Fail
            difference, scale, failure = float("inf"), 0.0, str(err).splitlines()[0]
        else:
            failure = None
        if not agrees(difference, scale):
            path.unlink()
            reason = failure or f"largest difference {difference:.3g} with logits up to {scale:.3g}"
            hint = (f" {FIXED_SIZE_HELP}: export it for the size you will run it at, with --height H --width W."
                    if dynamic and (height, width) != size else "")
            raise SystemExit(f"export.py: the ONNX graph does not reproduce PyTorch at {height} x {width} ({reason}); "
                             f"{path} was removed.{hint}")
        print(f"  onnxruntime vs PyTorch at 2 x 3 x {height} x {width}: largest |difference| {difference:.2e} "
              f"(logits up to {scale:.2f}; tolerance {RELATIVE_TOLERANCE:g} x that)")


if __name__ == "__main__":
    main()
