"""int8: the quantiser (int8) and the fidelity check that chose its form (fidelity)."""
