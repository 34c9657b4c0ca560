"""The encoder contract's shapes (models/README.md), shared by the ONNX graph builder (seeded,
convert: no torch) and the PyTorch definition (tinyusfm)."""
D, HEADS, HD, MLP, PATCH, IMG = 192, 12, 16, 768, 16, 224   # width, heads x head dim, MLP hidden, patch, input side
GRID = IMG // PATCH          # 14
T = GRID * GRID + 1          # 197 tokens incl. cls
OUT_BLOCKS = (2, 4, 6, 10)   # outputs: the residual stream after these 0-based blocks
