"""Benchmarks: usq/tract against onnxruntime (compare) and their plot (plot)."""
