"""The evaluation: a library (distortions, segmenter, stats, usq_cli; frame selection is in
usq_tools.data.hc18) used by the report CLI (report), quantise.fidelity, select_encoder and
nrq_manifold_search."""
