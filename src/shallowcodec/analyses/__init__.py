"""The paper's analyses, reproduced on the product's own models (``shallowcodec analyze VERB``).

Yang & Mandt, ICCV 2023 (PAPER.md, "Analyses the paper makes"), one module each; every module's
``analyze`` computes a report (a JSON-ready dict of its numbers) and draws its figure (a matplotlib
``Figure``), and takes its models, images and files as arguments (the command line resolves defaults):

- :mod:`.flatness`: the decoded straight latent path ŷ(t) = (1−t)·ŷ₀ + t·ŷ₁ between two images; the
  length of the curve g_s(ŷ(t)) over the straight distance ‖g_s(ŷ₁) − g_s(ŷ₀)‖ (1 for a linear g_s);
- :mod:`.filters`: the synthesis filters as images (JPEG-like: its kernels; two-layer: the equivalent
  image of one latent channel through both layers), ordered by the rate their channels carry;
- :mod:`.sga_curve`: R-D cost of real files (bpp + λ·MSE on 0–255) against SGA iterations, with seconds
  per image;
- :mod:`.tradeoff`: BD-rate against mbt2018-mean versus decode FLOPs/pixel (g_s + h_s) and decode ms;
- :mod:`.kernels`: the JPEG-like kernel size k after equal short training from the same start:
  FLOPs/pixel, R-D, BD-rate and blocking.
"""
