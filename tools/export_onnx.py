#!/usr/bin/env python
"""Export a trained model directory to ONNX and check it against torch.

    python tools/export_onnx.py MODEL_DIR [-o OUT] [--block SAMPLES] [--audio FILE ...] [--scores]

Writes OUT (default MODEL_DIR/onnx/): encoder.onnx, step.onnx (one Langevin step, all priors), with
--scores also score_<source>.onnx, manifest.json, and the
"onnx" section of MODEL_DIR/card.json; prints the max abs error of each graph against torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rtsep.errors import RtsepError
from rtsep.export import WINDOW, export_bundle


def _read_audio(paths: list[Path]) -> list:
    import soundfile as sf

    from rtsep.errors import AudioError

    clips = []
    for p in paths:
        try:
            data, _ = sf.read(p, dtype="float32", always_2d=True)
        except Exception as exc:
            raise AudioError(f"cannot read {p}: {str(exc).splitlines()[0]}") from None
        clips.append(data.T)  # (channels, samples); the sample rate is the caller's business
    return clips


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", type=Path, help="model directory with card.json and weights")
    ap.add_argument("-o", "--out", type=Path, default=None, help="output folder (default MODEL_DIR/onnx)")
    ap.add_argument("--block", "--window", dest="window", type=int, default=WINDOW,
                    help=f"window length in samples the graphs are traced and checked at (default {WINDOW}); "
                         "the graphs accept any multiple of the model's stride")
    ap.add_argument("--audio", type=Path, nargs="*", default=[],
                    help="audio files (at the model's sample rate) to check parity on, besides random audio")
    ap.add_argument("--priors-only", action="store_true",
                    help="a set without an encoder: export the priors' graphs only (add --scores for a chain "
                         "with relabelling, swap or band moves)")
    ap.add_argument("--scores", action="store_true", help="also write each prior's raw score graph")
    ap.add_argument("--no-check", action="store_true", help="skip the onnxruntime-vs-torch check")
    args = ap.parse_args(argv)
    try:
        audio = _read_audio(args.audio) if args.audio else None
        manifest = export_bundle(args.model_dir, args.out, window=args.window, check=not args.no_check,
                                 audio=audio, priors_only=args.priors_only, scores=args.scores)
    except RtsepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    for name, g in manifest["graphs"].items():
        err = g.get("worst_error")
        print(f"{name:24s} max abs error {err:.2e}" if err is not None else f"{name:24s} not checked")
    print(f"wrote {manifest['dir']} (window {manifest['window']}, time a multiple of {manifest['time_multiple']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
