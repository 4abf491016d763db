"""Block engine: exact latency arithmetic, streaming == offline, stems sum to the input."""

import numpy as np
import pytest

from rtsep.engine import BlockEngine, BlockGeometry
from rtsep.langevin import LangevinConfig, numpy_step, run_steps
from rtsep.separator import Separator


class DelayProbe:
    """Encoder that returns, for source k, the window shifted... simply the mixture itself: identity."""

    sources = ("a", "b")
    sample_rate = 16000
    stride = 16

    def encode(self, mix):
        return np.stack([mix, mix], axis=1), np.zeros((mix.shape[0], 2, mix.shape[1]), np.float32)

    def langevin(self, x, mix, steps):
        return run_steps(numpy_step(lambda k, x, sigma: -x / (1 + sigma[:, None])))(x, mix, steps)


GEOMS = [BlockGeometry(hop=256, context=128, lookahead=64, crossfade=32),
         BlockGeometry(hop=512, context=0, lookahead=0, crossfade=0)]


@pytest.mark.parametrize("geom", GEOMS)
def test_identity_engine_reconstructs_input_aligned(geom):
    eng = BlockEngine(DelayProbe(), geom, LangevinConfig(steps=0))
    x = np.random.default_rng(0).standard_normal((2, 3000)).astype(np.float32)
    st = eng.new_stream(2)
    out = np.concatenate([eng.process(st, x), eng.flush(st, x.shape[1])], axis=-1)
    assert out.shape == (1, 2, 2, 3000)
    assert np.allclose(out[0, :, 0], x, atol=1e-6)
    assert geom.latency == geom.hop + geom.lookahead


def test_output_waits_for_lookahead():
    g = GEOMS[0]
    eng = BlockEngine(DelayProbe(), g, LangevinConfig(steps=0))
    st = eng.new_stream(1)
    x = np.zeros((1, g.hop + g.lookahead - 1), np.float32)
    assert eng.process(st, x).shape[-1] == 0
    assert eng.process(st, np.zeros((1, 1), np.float32)).shape[-1] == g.hop


@pytest.mark.parametrize("steps,geom", [
    (0, BlockGeometry(hop=512, context=256, lookahead=128, crossfade=64)),
    (2, BlockGeometry(hop=512, context=256, lookahead=128, crossfade=64)),
    (2, BlockGeometry(hop=512, context=256, lookahead=256, crossfade=64, langevin_context=64, langevin_lookahead=128))])
def test_streaming_equals_offline_any_chunking(random_model, steps, geom):
    sep = Separator.load(random_model, steps=steps, seed=11, geometry=geom)
    x = (np.random.default_rng(1).standard_normal((1, 4000)) * 0.3).astype(np.float32)
    st = sep.engine.new_stream(1, seed=11)
    offline = np.concatenate([sep.engine.process(st, x), sep.engine.flush(st, 4000)], axis=-1)
    rng = np.random.default_rng(2)
    st = sep.engine.new_stream(1, seed=11)
    pieces, pos = [], 0
    while pos < 4000:
        n = int(rng.integers(1, 700))
        pieces.append(sep.engine.process(st, x[:, pos : pos + n]))
        pos += n
    pieces.append(sep.engine.flush(st, 4000))
    assert np.array_equal(np.concatenate(pieces, axis=-1), offline)


def test_separate_stems_sum_to_input_any_rate_and_channels(random_model):
    sep = Separator.load(random_model, steps=1, geometry=BlockGeometry(hop=1024, context=256, lookahead=256,
                                                                       crossfade=128))
    x = (np.random.default_rng(3).standard_normal((2, 22050)) * 0.2).astype(np.float32)
    stems = sep.separate(x, 44100)
    assert stems.shape == (2, 2, 22050)
    assert np.abs(stems.sum(axis=0) - x).max() < 1e-5


@pytest.mark.parametrize("hop,context,lookahead,crossfade", [(512, 2048, 512, 256), (512, 2048, 512, 300),
                                                            (256, 64, 128, 128), (1024, 0, 1024, 1000)])
@pytest.mark.parametrize("stride", [16, 256])
def test_live_geometry_is_valid_for_any_accepted_block_sizes(hop, context, lookahead, crossfade, stride):
    """`rtsep live` accepts any crossfade <= min(hop, lookahead); its Langevin span must stay a valid
    geometry, for the learned (stride 16) and the STFT (hop 256) encoders."""
    from rtsep.bench import live_geometry

    if any(n % stride for n in (hop, context, lookahead)):
        pytest.skip("block sizes the model's stride refuses")
    g = live_geometry(hop, context, lookahead, crossfade, stride=stride)
    g.check(stride)  # raises on a span that is not a multiple of the stride
    assert crossfade <= g.langevin_lookahead <= lookahead and g.langevin_context <= context


def test_bench_measures_the_mask_chain_and_rejects_a_bad_space(random_model, tmp_path):
    import json

    from typer.testing import CliRunner

    from rtsep.cli import app

    out = tmp_path / "bench.json"
    r = CliRunner().invoke(app, ["bench", "--model", str(random_model), "--engines", "torch", "--steps", "0,1",
                                 "--seconds", "0.5", "--threads", "1", "--space", "mask", "--json", str(out)])
    assert r.exit_code == 0, r.output
    records = json.loads(out.read_text())
    assert [(x["space"], x["steps"]) for x in records] == [("mask", 0), ("mask", 1)]
    assert all(x["rtf"] > 0 and x["blocks"] > 0 for x in records)
    r = CliRunner().invoke(app, ["bench", "--model", str(random_model), "--space", "latent"])
    assert r.exit_code != 0 and "unknown --space 'latent'" in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("bad", [{"space": "latent"}, {"stepz": 2}])
def test_bad_langevin_card_is_one_line_for_every_command(random_model, tmp_path, bad):
    """Every command reads a card's Langevin section through `LangevinConfig.from_card`."""
    import shutil

    import soundfile as sf
    from typer.testing import CliRunner

    from rtsep.card import update_card
    from rtsep.cli import app

    model = tmp_path / "model"
    shutil.copytree(random_model, model)
    update_card(model, "langevin", value=bad)
    sf.write(tmp_path / "m.wav", np.zeros(1000, np.float32), 16000)
    for args in (["file", str(tmp_path / "m.wav"), "-o", str(tmp_path / "out"), "--model", str(model)],
                 ["bench", "--model", str(model), "--engines", "torch", "--seconds", "0.5"]):
        r = CliRunner().invoke(app, args)
        lines = [ln for ln in r.output.splitlines() if ln.strip()]
        assert r.exit_code != 0 and len(lines) == 1 and "bad Langevin settings in card.json" in lines[0], r.output
        assert r.exception is None or isinstance(r.exception, SystemExit)
    assert not (tmp_path / "out").exists()
