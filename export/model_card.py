"""The model card (`README.md`) of an export: Hub metadata and the manifest's figures.

Written into every export directory, so that the directory can be uploaded to the
Hugging Face Hub as it is (`hf upload org/name out .`). The YAML front matter is the
Hub's model-card metadata (`library_name`, `tags`, `base_model`, `pipeline_tag`); the
body states the architecture, precision, the per-graph parity with torch and the
agreement of a lower precision with fp32, all read from the manifest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from gliner_onnx.manifest import Manifest, load_manifest

CARD_NAME = "README.md"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def hub_base_model(source: str) -> str | None:
    """`source` when it names a Hub repo (org/name), not a local directory."""
    if _HUB_ID.fullmatch(source) and not Path(source).exists():
        return source
    return None


def _yaml(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a YAML string


def front_matter(m: Manifest) -> list[str]:
    tags = ["gliner", "gliner-onnx", "onnx", "named-entity-recognition", "zero-shot", m.arch, m.precision]
    if m.relations_layer is not None:
        tags.append("relation-extraction")
    lines = ["---", "library_name: gliner-onnx", "pipeline_tag: token-classification", "tags:"]
    lines += [f"- {_yaml(t)}" for t in tags]
    base = hub_base_model(m.source)
    if base is not None:
        lines.append(f"base_model: {_yaml(base)}")
        if m.precision != "fp32":
            lines.append("base_model_relation: quantized")
    return [*lines, "---"]


def _parity(m: Manifest) -> list[str]:
    rows = ["| graph | file | max abs diff vs torch |", "|---|---|---|"]
    for name, g in m.graphs.items():
        diffs = {k: v for k, v in g.max_abs_diff.items() if k != "end_to_end_scores"}
        worst = max(diffs.values(), default=None)
        rows.append(f"| `{name}` | `{g.file}` | {'-' if worst is None else f'{worst:.2e}'} |")
    e2e = m.graphs["scorer"].max_abs_diff.get("end_to_end_scores") if "scorer" in m.graphs else None
    if e2e is not None:
        rows += ["", f"The whole chain against gliner's own forward: max abs diff {e2e:.2e} on the scores."]
    return rows


def _agreement(m: Manifest) -> list[str]:
    a = m.agreement
    if not a:
        return []
    return [
        "",
        f"{m.precision} against the fp32 graphs on {a.get('texts')} texts (threshold "
        f"{a.get('threshold', 0.5)}): entity F1 {a.get('f1', float('nan')):.3f}, precision "
        f"{a.get('precision', float('nan')):.3f}, recall {a.get('recall', float('nan')):.3f}.",
    ]


def model_card(m: Manifest) -> str:
    """The text of the model card of an export whose manifest is `m`."""
    labels = '["person", "organization", "location"]'
    fmt = "ORT format" if m.model_format == "ort" else "ONNX"
    config = m.ort.get("operator_config")
    body = [
        f"# {hub_base_model(m.source) or Path(m.source).name or 'GLiNER'} ({fmt}, {m.precision})",
        "",
        "A [GLiNER](https://github.com/urchade/GLiNER) model exported by `gliner-export` into separate "
        "ONNX graphs; the torch-free `gliner-onnx` runtime returns gliner's own answers with it.",
        "",
        "| | |",
        "|---|---|",
        f"| architecture | `{m.arch}` |",
        f"| precision | {m.precision} |",
        *([f"| model format | ORT format (reduced build: `{config}`) |"] if m.ort else []),
        *([f"| relations layer | `{m.relations_layer}` |"] if m.relations_layer else []),
        *([f"| span head | {m.span_head} |"] if "span" in m.arch else []),
        f"| max width / max len | {m.max_width} / {m.max_len} |",
        f"| word splitter | `{m.words_splitter}` |",
        f"| exported with | {', '.join(f'{k} {v}' for k, v in m.versions.items())} |",
        *([f"| source | `{m.source}` |"] if m.source else []),
        "",
        "## Parity",
        "",
        *_parity(m),
        *_agreement(m),
        "",
        "## Usage",
        "",
        "```python",
        "# pip install 'gliner-onnx[hub]'",
        "from gliner_onnx import GLiNER",
        "",
        'model = GLiNER.from_pretrained("<this repo id>")',
        f'model.predict_entities("Angela Merkel visited Paris.", {labels}, threshold=0.5)',
        "```",
        "",
    ]
    return "\n".join([*front_matter(m), "", *body])


def write_model_card(directory: str | Path) -> Path:
    """Write `README.md` into an export directory from its manifest."""
    directory = Path(directory)
    path = directory / CARD_NAME
    path.write_text(model_card(load_manifest(directory, verify=False)), encoding="utf-8")
    return path
