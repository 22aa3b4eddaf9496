"""Cost per generated token of the label decoder, with the key/value cache and without it.

    python benchmarks/bench_decoder.py --threads 2            # GPT-2-small-shaped decoder
    python benchmarks/bench_decoder.py --threads 2 --tiny     # the tests' tiny decoder
    python benchmarks/bench_decoder.py --threads 2 --tiny --arch uniencoder_token_decoder

Builds an offline decoder checkpoint (MiniLM encoder with untrained heads, a random GPT-2
decoder of GPT-2 small's shape by default: 12 layers, 768 wide, 50257 tokens), exports it, then
times the numpy generation loop on the exported graphs: `use_cache=True` (one `decoder_step`
per token on the cache) against `use_cache=False` (the whole sequence re-run through
`decoder_prefix` at every token), for several prefix lengths and numbers of sequences, with a
fixed number of new tokens (eos disabled). Also times end to end, text in, entities with
generated labels out, against gliner torch (greedy) in the same process (`--tiny` only; the
token decoder's reference is gliner's model with the runtime's two corrections, as its own
inference cannot run it: README, "The token-level decoder"). Writes JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import LoadMeter, header, percentile, timed, warn_if_dirty

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore")

TEXT = "On 3 March 2021 Angela Merkel met Emmanuel Macron in Paris to discuss vaccines with Pfizer."
LABELS = ["person", "organization", "location", "date"]


def same_answer(ref: list[list[dict[str, Any]]], got: list[list[dict[str, Any]]]) -> bool:
    """Equal entities and generated labels, scores within 1e-4."""
    return len(ref) == len(got) and all(
        len(r) == len(g)
        and all(
            {**a, "score": 0} == {**b, "score": 0} and abs(a["score"] - b["score"]) <= 1e-4
            for a, b in zip(r, g)
        )
        for r, g in zip(ref, got)
    )


def median_ms(times: list[float]) -> float:
    return percentile(times, 50) * 1000


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tiny", action="store_true", help="the tests' tiny decoder (2 layers, 32 wide)")
    p.add_argument(
        "--arch",
        default="uniencoder_span_decoder",
        choices=["uniencoder_span_decoder", "uniencoder_token_decoder"],
    )
    p.add_argument("--prefix-lens", default="8,32,128", help="prefix lengths (comma-separated)")
    p.add_argument("--seqs", default="1,32", help="sequences per generation (comma-separated)")
    p.add_argument("--new-tokens", type=int, default=15)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument(
        "--keep",
        default=None,
        help="directory for the checkpoint and export: reused when it holds them (default: a temporary one)",
    )
    p.add_argument(
        "--out", default=None, help="results JSON (default benchmarks/results/decoder[_tiny].json)"
    )
    args = p.parse_args()

    import onnxruntime  # noqa: F401  (its version goes into the results)
    import torch

    from gliner_onnx import GLiNER, SessionOptions
    from gliner_onnx.export import export_model
    from gliner_onnx.export.decoder_export import corrected_token_decoder
    from gliner_onnx.export.demo import minilm_dir
    from gliner_onnx.export.demo.backbones import build_gliner, make_tiny_gpt2
    from gliner_onnx.runtime.generation_loop import KIND_REP, KIND_TOKEN, GenerationParams, Prefixes, generate

    torch.set_num_threads(args.threads)
    head = header()
    warn_if_dirty(head["git"])
    load = LoadMeter()
    token = args.arch == "uniencoder_token_decoder"
    shape = (
        {"hidden_size": 32, "num_layers": 2, "num_heads": 2}
        if args.tiny
        else {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "model_vocab_size": 50257}
    )
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(args.keep or scratch)
        export_s = None
        if not (tmp / "onnx" / "gliner_onnx.json").is_file():
            gpt2 = make_tiny_gpt2(tmp / "gpt2", **shape)
            built = build_gliner(
                minilm_dir(),
                span_mode="token_level" if token else "markerV0",
                seed=0,
                logit_scale=2.0,
                labels_decoder=str(gpt2),
                decoder_mode="span",
            )
            built.save_pretrained(tmp / "ckpt")
            t0 = time.perf_counter()
            export_model(tmp / "ckpt", tmp / "onnx", log=lambda m: print(m, file=sys.stderr))
            export_s = time.perf_counter() - t0
        from gliner import GLiNER as TorchGLiNER

        model = TorchGLiNER.from_pretrained(str(tmp / "ckpt"), local_files_only=True).eval()
        ours = GLiNER.from_pretrained(
            tmp / "onnx", session_options=SessionOptions(intra_op_num_threads=args.threads)
        )
        dec = ours.pipeline.decoder  # type: ignore[attr-defined]  (decoder archs only)
        assert dec is not None
        vocab = dec._plain.get_vocab_size()
        rng = np.random.default_rng(0)
        rows = []
        for m in [int(x) for x in args.seqs.split(",")]:
            for length in [int(x) for x in args.prefix_lens.split(",")]:
                ids = rng.integers(1, vocab, size=(m, length))
                kind = np.full((m, length), KIND_TOKEN)
                kind[:, 0] = KIND_REP
                prefixes = Prefixes(rng.standard_normal((m, 384)).astype(np.float32), ids, kind)
                result: dict[str, Any] = {"sequences": m, "prefix_len": length, "new_tokens": args.new_tokens}
                feeds = {"span_rep": prefixes.span_rep, "prefix_ids": ids, "prefix_kind": kind}
                result["prefix_ms"] = median_ms(
                    timed(lambda f=feeds: dec.prefix.run(f), args.runs, args.warmup)
                )
                for cache in (True, False):
                    params = GenerationParams(
                        do_sample=False, max_new_tokens=args.new_tokens, use_cache=cache
                    )

                    def run(params: GenerationParams = params, prefixes: Prefixes = prefixes) -> None:
                        out = generate(
                            dec.prefix, dec.step, prefixes, eos_token_id=-1, trie=None, params=params
                        )
                        assert all(len(o) == args.new_tokens for o in out)

                    total = median_ms(timed(run, args.runs, args.warmup))
                    key = "cache" if cache else "no_cache"
                    result[f"{key}_total_ms"] = total
                    # the first token comes from the prefix pass; the others from the loop
                    result[f"{key}_ms_per_token"] = (total - result["prefix_ms"]) / (args.new_tokens - 1)
                result["speedup_per_token"] = result["no_cache_ms_per_token"] / result["cache_ms_per_token"]
                rows.append(result)
                print(json.dumps(result), file=sys.stderr)

        end_to_end: dict[str, Any] = {}
        if args.tiny:  # GPT-2 small: gliner's batch of ~200 span prefixes takes minutes per call
            kw: dict[str, Any] = {"threshold": 0.5, "do_sample": False}
            with corrected_token_decoder(model, 0.5) if token else contextlib.nullcontext():
                ref = model.inference([TEXT], LABELS, **kw)
                end_to_end["entities"] = sum(len(e) for e in ref)
                end_to_end["gliner_torch_ms"] = median_ms(
                    timed(lambda: model.inference([TEXT], LABELS, **kw), 3, 1)
                )
            end_to_end["same_answer"] = same_answer(ref, ours.inference([TEXT], LABELS, **kw))
            for cache in (True, False):
                end_to_end[f"ours_{'cache' if cache else 'no_cache'}_ms"] = median_ms(
                    timed(lambda cache=cache: ours.inference([TEXT], LABELS, use_cache=cache, **kw), 3, 1)
                )

    result_doc = {
        **head,
        "load": load.summary(),
        "arch": args.arch,
        "decoder": shape,
        "export_s": export_s,
        "threads": args.threads,
        "providers": ours.providers,
        "generation": rows,
        "end_to_end": end_to_end,
    }
    name = f"decoder{'_tiny' if args.tiny else ''}{'_token' if token else ''}.json"
    out = Path(args.out or Path(__file__).parent / "results" / name)
    out.write_text(json.dumps(result_doc, indent=2) + "\n", encoding="utf-8")
    print(f"{'seqs':>5} {'prefix':>6} {'prefix ms':>9} {'cache ms/tok':>12} {'no-cache ms/tok':>15} {'x':>5}")
    for r in rows:
        print(
            f"{r['sequences']:>5} {r['prefix_len']:>6} {r['prefix_ms']:>9.2f} "
            f"{r['cache_ms_per_token']:>12.2f} {r['no_cache_ms_per_token']:>15.2f} "
            f"{r['speedup_per_token']:>5.1f}"
        )
    print(json.dumps(end_to_end))
    return 0


if __name__ == "__main__":
    sys.exit(main())
