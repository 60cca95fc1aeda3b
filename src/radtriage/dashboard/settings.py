"""The dashboard's fixed display parameters and notices. Where models and examples are found is a
setting of the whole package: :mod:`radtriage.locations`."""

from __future__ import annotations

# Images are shown (and blended with heatmaps) at most DISPLAY_SIDE pixels a side. For DISPLAY only,
# JPEG 2000 DICOMs are decoded at the coarsest resolution level with DECODE_MIN_SIDE pixels a side
# (a 2,048 px file decodes at 512 px in ~0.15 s instead of ~0.5 s at 1,024 px). The model input is
# made from that decode, or from a second one at the model's level when it differs
# (preprocess.model_input), by the preprocessing the CLI and training share.
DECODE_MIN_SIDE = 512
DISPLAY_SIDE = 768
THUMB_SIDE = 160
HEATMAP_CMAP = "jet"
DEFAULT_OPACITY = 0.4
MAX_FILES = 12  # per upload: a MURA study has 1-11 images

NOTICE = "Research use only — not a medical device. Not for diagnosis or treatment decisions."
