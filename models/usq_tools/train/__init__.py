"""Training of the shipped weights (mim) and its loss plot (plot_loss)."""
