"""`gliner-onnx serve`'s options and what it runs (kept here, beside the server; the CLI adds
the subcommand). Importing this loads no server library: they load when the server starts."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .limits import Capacity, Connections, Limits, default_split

SPINNING_HELP = (
    "keep ONNX Runtime's intra-op threads spinning between a call's operators (they stop when it "
    "returns): about a tenth faster at batch 1 on CPUs nothing else uses, about half again slower "
    "where another process keeps them busy (default: they sleep)"
)


# Options one host reads and the other would ignore: given to the other, `serve` refuses them.
# (`tests/test_serve.py` checks that these cover the "embedded server" and "Ray Serve" groups.)
EMBEDDED_ONLY = (
    "cors_origin", "access_log",
    "workers", "threads", "spinning", "max_queue", "queue_target_ms", "queue_interval_ms",
    "shed_batch_size", "refusal_delay_ms", "max_queue_wait_ms", "max_body_bytes", "max_text_chars",
    "max_labels", "max_texts", "request_timeout_s", "graceful_timeout_s",
    "max_connections", "keep_alive_s", "header_timeout_s",
)  # fmt: skip
RAY_ONLY = ("replicas", "cpus_per_replica")


def add_serve_parser(sub: Any) -> None:
    """The `serve` subcommand's parser, on the CLI's subparsers."""
    sv = sub.add_parser(
        "serve",
        help="serve an export over HTTP (gliner's wire format; the serve extra, or ray with --ray)",
        description="An HTTP server in this process (uvicorn; the serve extra): POST {text, labels, "
        "threshold, flat_ner, multi_label[, relations, relation_threshold]} (or texts: a list) to the "
        'route prefix, get {"entities": [...]} back, as from gliner 0.2.29\'s own server (its '
        "GLiNERClient works). GET / (a playground page), /openapi.json, /health, /ready, /metrics. "
        "SIGTERM or Ctrl-C stops gracefully. "
        "--ray serves the same app on Ray Serve instead (the ray extra; --address joins a cluster).",
    )
    sv.add_argument("export_dir")
    _http(sv.add_argument_group("HTTP"))
    _workers_and_limits(sv.add_argument_group("workers and limits (embedded server)"))
    _connections(sv.add_argument_group("connections (embedded server)"))
    _batching_and_ray(sv)
    sv.set_defaults(host_only_defaults={d: sv.get_default(d) for d in (*EMBEDDED_ONLY, *RAY_ONLY)})


def _http(h: argparse._ArgumentGroup) -> None:
    h.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    h.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    h.add_argument("--route-prefix", default="/gliner", help="URL path of the API (default /gliner)")
    h.add_argument(
        "--api-key",
        default=None,
        help="require this key (X-API-Key or Authorization: Bearer); "
        "default: the GLINER_ONNX_API_KEY environment variable, else none",
    )
    h.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        help="allow this origin (repeatable; default none; embedded server)",
    )
    h.add_argument(
        "--access-log", action="store_true", help="one JSON line per request on stderr (embedded server)"
    )
    h.add_argument(
        "--no-ui", action="store_true", help="no playground page at GET / (the API and /openapi.json stay)"
    )


def _workers_and_limits(w: argparse._ArgumentGroup) -> None:
    w.add_argument("--workers", type=int, default=None, help="model worker threads (default: see --threads)")
    w.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime threads per worker (default: 1 worker x all CPUs up to 4 threads, "
        "then more workers; measured best on 2 CPUs)",
    )
    w.add_argument("--spinning", action="store_true", help=SPINNING_HELP + "; for one worker")
    w.add_argument(
        "--max-queue",
        type=int,
        default=0,
        help="texts waiting at most, then 503: a burst this large is absorbed "
        "(default 0: four batches per worker, at least 16)",
    )
    w.add_argument(
        "--queue-target-ms",
        type=float,
        default=Capacity.queue_target_ms,
        help="a queue stands when each batch's oldest text waited longer than one batch's compute "
        "plus this, for --queue-interval-ms; then the server sheds "
        f"(default {Capacity.queue_target_ms:g} ms)",
    )
    w.add_argument(
        "--queue-interval-ms",
        type=float,
        default=Capacity.queue_interval_ms,
        help="how long the queue must stand before shedding begins "
        f"(default {Capacity.queue_interval_ms:g} ms, CoDel's)",
    )
    w.add_argument(
        "--shed-batch-size",
        type=int,
        default=None,
        help="while shedding, a text is admitted only while two batches of this size per worker "
        "at most are ahead of it (default: --max-batch-size; 0: never shed, --max-queue alone admits)",
    )
    w.add_argument(
        "--refusal-delay-ms",
        type=float,
        default=Capacity.refusal_delay_ms,
        help="hold an overload 503 this long, so that clients retrying at once without reading "
        f"Retry-After ask at that pace (default {Capacity.refusal_delay_ms:g} ms; 0: answer at once)",
    )
    w.add_argument(
        "--max-queue-wait-ms",
        type=float,
        default=1000.0,
        help="a text waiting longer for a worker gets 503 (default 1000 ms)",
    )
    w.add_argument("--max-body-bytes", type=int, default=1 << 20, help="413 above this (default 1 MiB)")
    w.add_argument("--max-text-chars", type=int, default=50_000, help="400 above this (default 50,000)")
    w.add_argument("--max-labels", type=int, default=100, help="400 above this (default 100)")
    w.add_argument("--max-texts", type=int, default=64, help="texts per batch-form request (default 64)")
    w.add_argument("--request-timeout-s", type=float, default=30.0, help="504 past this (default 30 s)")
    w.add_argument(
        "--graceful-timeout-s",
        type=float,
        default=30.0,
        help="on SIGTERM, how long in-flight requests may take to finish (default 30 s)",
    )


def _connections(c: argparse._ArgumentGroup) -> None:
    c.add_argument(
        "--max-connections",
        type=int,
        default=Connections.max_connections,
        help="open connections at most; requests past it get 503 "
        f"(uvicorn's limit_concurrency; default {Connections.max_connections})",
    )
    c.add_argument(
        "--keep-alive-s",
        type=int,
        default=Connections.keep_alive_s,
        help="close a keep-alive connection idle this long "
        f"(uvicorn's timeout_keep_alive; default {Connections.keep_alive_s} s)",
    )
    c.add_argument(
        "--header-timeout-s",
        type=float,
        default=Connections.header_timeout_s,
        help="close a connection whose request head has not all arrived in this time "
        f"(default {Connections.header_timeout_s:g} s; a body that has not arrived within "
        "--request-timeout-s gets 408)",
    )


def _batching_and_ray(sv: argparse.ArgumentParser) -> None:
    r = sv.add_argument_group("batching (both hosts)")
    r.add_argument("--max-batch-size", type=int, default=8, help="texts per runtime call (default 8)")
    r.add_argument(
        "--batch-wait-timeout-ms",
        type=float,
        default=0.0,
        help="how long a batch waits to fill up (default 0: take what is waiting)",
    )
    y = sv.add_argument_group("Ray Serve (--ray; the ray extra)")
    y.add_argument(
        "--ray", action="store_true", help="deploy on Ray Serve instead (a local Ray, or --address)"
    )
    y.add_argument("--address", default=None, help="join this Ray cluster (auto, host:port); implies --ray")
    y.add_argument("--replicas", type=int, default=1, help="model replicas (default 1)")
    y.add_argument(
        "--cpus-per-replica", type=float, default=1.0, help="CPUs (and ORT threads) per replica (default 1)"
    )


def run_serve(args: argparse.Namespace) -> int:
    """`gliner-onnx serve`: the embedded server, or Ray Serve with --ray / --address."""
    from gliner_onnx.manifest import load_manifest

    ray = args.ray or args.address is not None
    misplaced = [
        "--" + d.replace("_", "-")
        for d in (EMBEDDED_ONLY if ray else RAY_ONLY)
        if getattr(args, d) != args.host_only_defaults[d]
    ]
    if misplaced:
        host, other = ("Ray Serve", "the embedded server") if ray else ("the embedded server", "Ray Serve")
        print(
            f"gliner-onnx serve: error: {', '.join(misplaced)}: options of {other}, which {host} "
            "would ignore" + ("" if ray else " (add --ray)"),
            file=sys.stderr,
        )
        return 2
    load_manifest(args.export_dir, verify=False)  # a bad directory fails here, not in a worker
    log = lambda m: print(f"gliner-onnx serve: {m}", file=sys.stderr, flush=True)  # noqa: E731
    if ray:
        from gliner_onnx.ray import ServeConfig, serve_forever

        config = ServeConfig(
            export_dir=args.export_dir,
            host=args.host,
            port=args.port,
            route_prefix=args.route_prefix,
            replicas=args.replicas,
            cpus_per_replica=args.cpus_per_replica,
            max_batch_size=args.max_batch_size,
            batch_wait_timeout_ms=args.batch_wait_timeout_ms,
            address=args.address,
            api_key=args.api_key or os.environ.get("GLINER_ONNX_API_KEY") or None,
            ui=not args.no_ui,
        )
        serve_forever(config, log=log)
        return 0
    from .app import AppSettings
    from .host import serve

    workers, threads = default_split(os.cpu_count() or 1, args.workers, args.threads)
    settings = AppSettings(
        export_dir=args.export_dir,
        route_prefix=args.route_prefix,
        limits=Limits(
            args.max_body_bytes, args.max_text_chars, args.max_labels, args.max_texts, args.request_timeout_s
        ),
        capacity=Capacity(
            workers,
            threads,
            args.max_batch_size,
            args.batch_wait_timeout_ms,
            args.max_queue,
            args.max_queue_wait_ms,
            shed_batch=args.shed_batch_size,
            queue_target_ms=args.queue_target_ms,
            queue_interval_ms=args.queue_interval_ms,
            refusal_delay_ms=args.refusal_delay_ms,
            spinning=args.spinning,
        ),
        api_key=args.api_key or os.environ.get("GLINER_ONNX_API_KEY") or None,
        cors_origins=tuple(args.cors_origin),
        access_log=args.access_log,
        shutdown_timeout_s=args.graceful_timeout_s,
        ui=not args.no_ui,
    )
    connections = Connections(args.max_connections, args.keep_alive_s, args.header_timeout_s)
    return serve(
        settings,
        host=args.host,
        port=args.port,
        graceful_timeout_s=args.graceful_timeout_s,
        connections=connections,
        log=log,
    )
