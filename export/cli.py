"""`gliner-export`: export a GLiNER checkpoint to separate ONNX graphs plus a manifest."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gliner_onnx.archs import ARCH_NAMES
from gliner_onnx.errors import GlinerOnnxError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gliner-export",
        description=(
            "Trace a GLiNER checkpoint into separate ONNX graphs (text encoder, label encoder, "
            "scorer), check each against torch, and write them with the tokenizer(s) and a "
            "manifest that the torch-free runtime loads."
        ),
        epilog=(
            f"Supported now: {', '.join(ARCH_NAMES)}. Without --model, --arch exports an "
            "offline demo checkpoint on MiniLM: for the uni/bi span/token archs heads trained on synthetic "
            "sentences (a small demo, not a released GLiNER), for relex and decoder archs untrained heads "
            "(meaningless entities). "
            "An int8 or fp16 export is checked against the fp32 graphs: the entity F1 of its "
            "predictions on a fixed corpus, and its speed and size against fp32 on this machine, "
            "are printed and recorded in the manifest."
        ),
    )
    _source_and_output(p)
    _speed_and_precision(p.add_argument_group("speed and precision"))
    _tracing(p.add_argument_group("tracing and validation"))
    return p


def _source_and_output(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("source")
    src.add_argument("--model", help="a local GLiNER checkpoint directory or a hub id")
    src.add_argument(
        "--arch",
        choices=ARCH_NAMES,
        help="with --model: the expected architecture (a mismatch is an error); "
        "without: the demo checkpoint's architecture",
    )
    out = p.add_argument_group("output")
    out.add_argument("--output", required=True, help="the export directory to create")
    out.add_argument("--overwrite", action="store_true", help="replace an existing export directory")
    out.add_argument(
        "--format",
        dest="model_format",
        choices=["onnx", "ort"],
        default="onnx",
        help="ort: convert the validated graphs (any precision) to ONNX Runtime's ORT format, for its "
        "mobile packages and reduced builds, and write required_operators.config for a reduced build "
        "(--include_ops_by_config); checked against the ONNX graphs' answers (default onnx; docs/edge.md)",
    )


def _speed_and_precision(opt: argparse._ArgumentGroup) -> None:
    opt.add_argument(
        "--no-optimize",
        dest="optimize",
        action="store_false",
        help="export the plain graphs (default: rewrite them for speed where parity with torch holds, "
        "e.g. the factorized span head; the export falls back to the plain graphs when it does not)",
    )
    opt.add_argument(
        "--fuse",
        action="store_true",
        help="also run ONNX Runtime's transformer optimizer on the encoders (fused attention, "
        "LayerNorm and GELU operators; BERT-like backbones); off by default: within noise on "
        "CPU here, see benchmarks/README.md",
    )
    prec = opt.add_mutually_exclusive_group()
    prec.add_argument(
        "--quantize",
        choices=["int8"],
        help="int8, for CPUs: every weight MatMul (and a token model's LSTM) dynamically quantized "
        "(int8 weights per output channel; the first token quantized apart in the feed-forwards), "
        "word-embedding tables int8 with one scale per row (export/precision/int8.py); the export "
        "measures and records the entity F1, speed and size against fp32",
    )
    opt.add_argument(
        "--int8-recipe",
        choices=["default", "fast", "attention"],
        default="default",
        help="with --quantize int8: default (as above); fast: without the first token apart, ~8%% faster "
        "and further from fp32; attention: only the attention MatMuls, uint8 weights (the earlier recipe: "
        "closest to fp32, barely faster, 0.9x the size). Figures per arch: benchmarks/README.md",
    )
    prec.add_argument(
        "--dtype",
        choices=["fp32", "fp16"],
        default="fp32",
        help="fp16: half-precision weights and compute with float32 inputs and outputs, for GPUs "
        "(default fp32)",
    )


def _tracing(tr: argparse._ArgumentGroup) -> None:
    from .exporter import DEFAULT_ATOL, DEFAULT_OPSET

    tr.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    tr.add_argument(
        "--atol",
        type=float,
        default=DEFAULT_ATOL,
        help=f"max abs difference allowed vs torch on probabilities (default {DEFAULT_ATOL})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.int8_recipe != "default" and args.quantize != "int8":
        print("gliner-export: error: --int8-recipe needs --quantize int8", file=sys.stderr)
        return 2
    if args.model is None and args.arch is None:
        print("gliner-export: error: give --model, --arch, or both", file=sys.stderr)
        return 2
    try:
        from .exporter import export_model

        model = args.model
        source = args.model
        if model is None:
            from .demo import build_demo, demo_source, demo_warning

            print(demo_warning(args.arch), file=sys.stderr)
            model = build_demo(args.arch)
            source = demo_source(args.arch)
        report = export_model(
            model,
            args.output,
            arch=args.arch,
            opset=args.opset,
            atol=args.atol,
            overwrite=args.overwrite,
            optimize=args.optimize,
            fuse=args.fuse,
            precision=args.quantize or args.dtype,
            source=source,
            log=lambda m: print(m, file=sys.stderr),
            model_format=args.model_format,
            int8_recipe=args.int8_recipe,
        )
    except (GlinerOnnxError, ValueError) as e:
        print(f"gliner-export: error: {e}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
