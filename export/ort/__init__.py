"""ONNX Runtime's own tools on an export: `fusion` (its offline transformer optimizer on the
encoder graphs, `gliner-export --fuse`) and `model_format` (ORT format copies for its mobile and
reduced-size builds, `gliner-export --format ort`)."""
