"""Rewrites of the Hugging Face backbones for the trace: the same function of the weights,
computed with fewer or cheaper ONNX operators (`deberta`: DeBERTa-v2/v3's disentangled
attention). Each is applied while tracing an optimized export and validated against the model
as loaded, like every graph."""
