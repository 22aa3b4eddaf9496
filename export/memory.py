"""Keeping an export's peak memory near one copy of the weights per stage.

An export holds the torch model (one copy of the weights) from loading to validation; every
stage that makes another copy adds to the peak. What this module removes, by stage:
- loading: gliner's default path builds a randomly initialised model, then loads the state
  dict into it (two copies); `load_assigned` has gliner build the model on the meta device and
  assign the loaded tensors (`low_cpu_mem_usage`: one copy), and falls back to the default path
  where that would not give the same model;
- tracing: the legacy exporter parses its own serialized graph back (a copy) to look for
  onnxscript functions of custom domains; `no_onnxscript_reparse` skips that search when no
  such function is registered, so it could find nothing;
- lower precision: the torch model is not needed once the fp32 graphs are validated
  (`release_model`).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Any

import torch


def load_assigned(load: Callable[..., Any]) -> Any:
    """`load(low_cpu_mem_usage=...)` (gliner's `from_pretrained` with its other arguments bound),
    the weights loaded once: the model built on the meta device, the state dict's tensors
    assigned to it. gliner falls back to its default path itself where the meta model would keep
    parameters the checkpoint lacks or buffers it cannot rebuild. Assigning keeps the checkpoint's
    dtype where the default path copies into float32 parameters: a checkpoint with other floating
    dtypes is loaded the default way, so that the model is the same either way."""
    model = load(low_cpu_mem_usage=True)
    if all(p.dtype == torch.float32 for p in model.parameters() if p.is_floating_point()):
        return model
    del model
    gc.collect()
    return load(low_cpu_mem_usage=False)


def _custom_onnxscript_functions() -> bool:
    """Whether torch.onnx's registry holds an onnxscript function (`to_function_proto`) of a
    domain other than ONNX's, aten's and prim's: the only functions `_add_onnxscript_fn` adds.
    True where the registry cannot be read (torch changed it): nothing is skipped then."""
    from torch.onnx._internal.torchscript_exporter import jit_utils, registration

    try:
        for name, group in registration.registry._registry.items():
            domain = name.split("::", 1)[0] if "::" in name else ""
            standard = jit_utils.is_aten(domain) or jit_utils.is_prim(domain) or jit_utils.is_onnx(domain)
            if not domain or standard:
                continue
            if any(hasattr(f, "to_function_proto") for f in group._functions._merged.values()):
                return True
    except AttributeError:
        return True
    return False


@contextlib.contextmanager
def no_onnxscript_reparse() -> Iterator[None]:
    """Within: the legacy exporter does not parse its serialized graph back to add onnxscript
    functions when no custom-domain one is registered (the search would find none, and the
    parse holds one more copy of every weight at the tracing peak). Otherwise unchanged."""
    from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

    if _custom_onnxscript_functions():
        yield
        return
    original = onnx_proto_utils._add_onnxscript_fn

    def unchanged(model_bytes: bytes, custom_opsets: Any) -> bytes:
        return model_bytes

    onnx_proto_utils._add_onnxscript_fn = unchanged
    try:
        yield
    finally:
        onnx_proto_utils._add_onnxscript_fn = original


def release_model(ctx: Any) -> None:
    """Drop the context's references to the torch model (the model, its wrappers) and collect,
    so that the weights are freed where nothing else holds the model."""
    ctx.model = None
    ctx.modules = {}
    gc.collect()
