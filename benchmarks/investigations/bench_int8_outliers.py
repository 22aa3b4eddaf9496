"""Where the ranges of the int8 MatMuls' inputs come from: the first token, a few channels, or all.

    python benchmarks/investigations/bench_int8_outliers.py --arch uniencoder_span

Exports the trained demo of `--arch` in fp32 (or takes `--fp32 DIR`), records the text
encoder's inputs on `--texts` synthetic sentences (the int8 calibration inputs,
`precision.calibration_feeds`: batch 1, the demo's labels) and, for the input of each weight
MatMul of the backbone's layers, reports max |x| over: the first token ([CLS]); every other
token; the other tokens' channels, largest first (the top 8) and the median channel. Dynamic
int8 scales each MatMul's input by one range per tensor, so whichever of these is largest sets
the step for all. Then the relative error ||q - f|| / ||f|| of the text encoder's outputs for
four recipes of `export/precision/int8.py` on the same inputs. Accuracy only: the machine's load does not
change these figures. Writes results/int8_outliers_<arch>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_common import RESULTS, header, quiet, warn_if_dirty  # noqa: E402
from bench_int8_error import rel_error  # noqa: E402

RECIPES = {
    "every MatMul": {"scope": "all"},
    "every MatMul, first token apart in the feed-forwards": {"scope": "all", "first_token": "ffn"},
    "every MatMul, first token apart in every layer MatMul": {"scope": "all", "first_token": "layers"},
    "every MatMul, per token": {"scope": "all", "activations": "token"},
}


def run(proto: Any, feeds: list[dict[str, Any]]) -> list[list[Any]]:
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        copy = onnx.ModelProto()
        copy.CopyFrom(proto)  # saving with external data rewrites the proto it is given
        path = Path(tmp) / "m.onnx"
        onnx.save(copy, str(path), save_as_external_data=True, location="m.data")
        so = ort.SessionOptions()
        so.log_severity_level = 3
        session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        return [session.run(None, {k: v for k, v in f.items() if k in names}) for f in feeds]


def rel_errors(ref: list[list[Any]], got: list[list[Any]]) -> list[float]:
    """bench_int8_error's relative error, per output over all feeds (runs: [feed][output])."""
    return [round(rel_error([r[j] for r in ref], [g[j] for g in got]), 5) for j in range(len(ref[0]))]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="uniencoder_span")
    p.add_argument("--fp32", type=Path, help="an fp32 export of the trained demo (default: export it)")
    p.add_argument("--texts", type=int, default=32)
    p.add_argument("--out", type=Path)
    args = p.parse_args()

    import numpy as np
    import onnx
    from onnx import helper

    from gliner_onnx.export import export_model
    from gliner_onnx.export.demo import build_demo, demo_source
    from gliner_onnx.export.precision import calibration_feeds
    from gliner_onnx.export.precision.int8 import BACKBONE_LAYER, Int8Recipe, quantize_graph, weight_matmuls

    head = header()
    warn_if_dirty(head["git"])
    with tempfile.TemporaryDirectory() as work:
        fp32 = args.fp32 or Path(work) / "fp32"
        if args.fp32 is None:
            with quiet():
                export_model(build_demo(args.arch), fp32, source=demo_source(args.arch), log=lambda _m: None)
        feeds = calibration_feeds(fp32, args.texts)["text_encoder"]
        proto = onnx.load(str(fp32 / "text_encoder.onnx"))
    inputs = sorted({n.input[0] for n in weight_matmuls(proto) if BACKBONE_LAYER in n.name})
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    for x in inputs:
        probe.graph.output.append(helper.make_empty_tensor_value_info(x))
    outs = run(probe, feeds)
    first_out = len(proto.graph.output)
    rows = []
    for j, x in enumerate(inputs):
        values = [o[first_out + j][0] for o in outs]  # batch 1: [tokens, channels]
        channels = np.max([np.abs(v[1:]).max(axis=0) for v in values], axis=0)
        rows.append(
            {
                "input": x,
                "first_token_max": round(float(max(np.abs(v[0]).max() for v in values)), 3),
                "other_tokens_max": round(float(channels.max()), 3),
                "other_tokens_top8_channels": [round(float(c), 2) for c in np.sort(channels)[::-1][:8]],
                "other_tokens_median_channel": round(float(np.median(channels)), 3),
            }
        )
        r = rows[-1]
        print(f"{x[-60:]:60} first {r['first_token_max']:6.2f} others {r['other_tokens_max']:6.2f}")
    ref = run(proto, feeds)
    errors = {}
    for name, kw in RECIPES.items():
        with quiet():
            q, _ = quantize_graph(proto, Int8Recipe(name, **kw))
        errors[name] = dict(zip([o.name for o in proto.graph.output], rel_errors(ref, run(q, feeds))))
        print(f"{name:55} {errors[name]}", flush=True)
    record = {**head, "arch": args.arch, "texts": len(feeds), "inputs": rows, "relative_error": errors}
    out = args.out or RESULTS / f"int8_outliers_{args.arch}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
