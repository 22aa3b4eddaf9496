"""bench_real_size.py's parts: the release shapes, their tokenizer, the builders, the child processes."""
