"""radtriage: radiograph triage models (chest: 14 VinBigData findings; upper limb: MURA normal/abnormal).

Data path, walked the same way by training, evaluation, the CLI and the dashboard::

    file or bytes -> radiograph.load -> preprocess.preprocess (params from the model's metadata)
                  -> model (artifact) -> probabilities | Grad-CAM | study aggregation

Research use only; not a medical device.
"""

__version__ = "0.1.0"
