"""The encoder contract model: its shapes (contract), the PyTorch encoder (tinyusfm), the seeded
ONNX model (seeded) and the checkpoint converter (convert)."""
