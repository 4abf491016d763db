"""The ONNX Runtime engine gives the torch engine's stems (same seed), on the same blocks."""

import shutil

import numpy as np
import pytest

from rtsep.engine import BlockGeometry
from rtsep.errors import BundleError
from rtsep.export import export_bundle
from rtsep.separator import Separator


def test_onnx_engine_matches_torch_engine(random_model, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(random_model, model)
    with pytest.raises(BundleError):
        Separator.load(model, backend="onnx")  # not exported yet: one clear error
    export_bundle(model, window=2048)
    geom = BlockGeometry(hop=1024, context=512, lookahead=256, crossfade=128, langevin_context=256)
    x = (np.random.default_rng(0).standard_normal((1, 6000)) * 0.3).astype(np.float32)
    a = Separator.load(model, backend="torch", steps=2, seed=3, geometry=geom).separate(x, 16000)
    b = Separator.load(model, backend="onnx", provider="cpu", steps=2, seed=3, geometry=geom).separate(x, 16000)
    assert np.abs(a - b).max() < 1e-3
    assert np.abs(b.sum(axis=0) - x).max() < 1e-5
    # the mask-space chain takes its scores from the same step graph
    a = Separator.load(model, backend="torch", steps=2, seed=3, geometry=geom, space="mask").separate(x, 16000)
    b = Separator.load(model, backend="onnx", provider="cpu", steps=2, seed=3, geometry=geom,
                       space="mask").separate(x, 16000)
    assert np.abs(a - b).max() < 1e-3
    assert np.abs(b.sum(axis=0) - x).max() < 1e-5


def test_warmup_runs_the_spectral_encoder_on_one_window_not_a_window_of_frames():
    """The warm-up run sized the encoder graph's "frames" axis as `window` samples' worth of frames: 16384
    frames (4 min of audio) grew ONNX Runtime's arena to ~600 MB RSS in every process that loaded music4."""
    from rtsep.bundle import Bundle
    from rtsep.runtime import metadata, session, warmup_inputs

    sess = session(Bundle.load("toy4").graph("encoder.onnx"), "cpu", 1, warmup=False)
    meta = metadata(sess)
    spec = warmup_inputs(sess)["spec"]
    assert spec.shape[0] == 1 and spec.shape[-1] == int(meta["window"]) // int(meta["stride"]) + 1
