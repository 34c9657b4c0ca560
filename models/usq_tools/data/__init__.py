"""Data: the HC18 frames (hc18) and their local WebP cache (prepare_hc18_cache). The B-mode
simulator is usq_reference.simulate_bmode: the reference's test manifold needs it too, and the
reference does not import usq_tools."""
