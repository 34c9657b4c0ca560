"""usq's model tooling: every former models/*.py script is a module run with `python -m`.

    usq_tools.paths                     where models/, the repo root and the usq binary are
    usq_tools.data.hc18                 HC18 frames: subjects, splits, frame picking, reading
    usq_tools.data.prepare_hc18_cache   CLI: WebP copy of the HC18 training frames
    usq_tools.data.pocus_lung           CLI: POCUS lung frames split by source video; fit-nrq folders
    usq_tools.export.contract           the encoder contract's shapes
    usq_tools.export.tinyusfm           the TinyUSFM encoder in PyTorch
    usq_tools.export.seeded             CLI: models/tinyusfm-seeded.onnx
    usq_tools.export.convert            CLI: PyTorch checkpoint -> contract ONNX
    usq_tools.train.mim                 CLI: MIM training of the encoder
    usq_tools.train.plot_loss           CLI: models/train_loss.png
    usq_tools.quantise.int8             CLI: models/tinyusfm-int8.onnx
    usq_tools.quantise.fidelity         CLI: int8 candidates vs fp32 on training frames
    usq_tools.evaluate.distortions      the 9 distortion families
    usq_tools.evaluate.segmenter        the U-Net segmenter and Dice
    usq_tools.evaluate.stats            PSNR, SSIM, Spearman, 2AFC, targets
    usq_tools.evaluate.usq_cli          scores through the usq binary
    usq_tools.evaluate.report           CLI: models/REPORT.md and models/report/
    usq_tools.evaluate.organ            CLI: another organ's monotonicity (models/report/organ-*.json)
    usq_tools.evaluate.clean_set_size   CLI: NRQ against the number of clean training sources
    usq_tools.bench.compare             CLI: usq/tract vs onnxruntime benchmark
    usq_tools.bench.plot                CLI: docs/benchmarks.png
    usq_tools.nrq_manifold_search       CLI: NRQ manifold fit settings on training subjects
    usq_tools.select_encoder            CLI: candidate encoders on training subjects
    usq_tools.select_checks             CLI: the acquisition checks' measures and organ rule, on training frames

The package imports nothing heavy here, so `usq_tools.bench.compare`'s light parent process stays light.
"""
