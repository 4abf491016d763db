"""Trained model directory -> ONNX bundle: `encoder.onnx` + `step.onnx`, checked against torch.

MODEL_DIR holds `card.json` (`card["priors"][source]["config"]`, `card["encoder"]["config"]`) and
the weights `priors/<source>.pt` and `encoder.pt`. `export_bundle` writes into OUT (default
MODEL_DIR/onnx/):

    encoder.onnx        mix (B, 1, T) -> mean (B, N, T), log_scale (B, N, T); an STFT encoder between its
                        transforms: spec (B, 2F, L) -> logits (B, N, F, L), log_scale (`rtsep.stft_encoder`)
    step.onnx           one Langevin step for all N sources, every prior's score inside:
                        x (B, N, T), mix (B, 1, T), noise (B, N, T), sigma/eta/lik/proj (B,)
                        -> x_next (B, N, T)   (the formula in rtsep.langevin)
    score_<source>.onnx only with `scores=True`: x (B, 1, T), sigma (B,) -> score (B, 1, T), log_prob (B,)
    manifest.json       sha256 of each graph, window, shapes, ONNX-vs-torch errors

B and T are dynamic (T a multiple of `time_multiple`, the encoder stride and the priors'
squeeze); `window` is the length the graphs are traced at and checked at (with a second, shorter
length to prove the time axis free). Each graph embeds its metadata (sample_rate, sources,
window, sigmas, rtsep_version, graph, source) in ONNX `metadata_props`; values other than plain
strings are JSON. Parity: onnxruntime (CPU) against torch on random audio, and on `audio` when
given. The encoder and step graphs, whose outputs are audio, must be within 1e-4 max abs error
at the card's Langevin step sizes; a raw score graph (outputs up to ~100) within 1e-4 times
max(1, max |torch output|) (a score draw that hits a ReLU kink is redrawn: see `check_score`).
Requires torch (rtsep[train]).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .atomic import replacing, write_text
from .bundle import Bundle, seal
from .card import sha256, update_card
from .errors import BundleError, RtsepError
from .langevin import LangevinConfig, schedule
from .nn.encoder import Encoder
from .nn.flow import FlowPrior
from .nn.score import INPUT_NAMES as SCORE_INPUTS
from .nn.score import OUTPUT_NAMES as SCORE_OUTPUTS
from .nn.score import STEP_INPUTS, STEP_OUTPUTS, ScoreModule, StepModule, score_graph, step_function, step_graph
from .stft_encoder import INTERFACE, SPECTRAL_INPUTS, SPECTRAL_OUTPUTS, encoder_runner
from .nn.tfprior import (TF_GRAD_INPUTS, TF_GRAD_OUTPUTS, TFGradModule, TFPrior, mask_grad_function, mask_grad_graph,
                         stft_power)

WINDOW = 16384  # samples: ~1 s at 16 kHz, the block window (context + hop + lookahead) the graphs are traced at
TOLERANCE = 1e-4
ENCODER_INPUTS = ("mix",)
ENCODER_OUTPUTS = ("mean", "log_scale")
ENCODER_FILE = "encoder.onnx"
STEP_FILE = "step.onnx"
TF_GRAD_FILE = "tf_grad.onnx"
MANIFEST = "manifest.json"


def score_file(source: str) -> str:
    return f"score_{source}.onnx"


# ---------------------------------------------------------------------------------------------
# Loading the torch models


def load_models(model: Path | str | Bundle, priors_only: bool = False
                ) -> tuple[dict[str, Any], Encoder | None, dict[str, FlowPrior]]:
    """(card, encoder or None, priors by source in the bundle's order) of MODEL in eval mode, from its
    checked Bundle (configs cross-checked; recorded weight hashes are not required to match: export
    re-records them). BundleError if unusable."""
    bundle = Bundle.load(model, verify=False)
    if not priors_only and not bundle.has_encoder:
        raise BundleError(f"{bundle.path} has no encoder (train it first, or export the priors only)")
    if priors_only and bundle.has_encoder:  # its runtime would look for the encoder graph this leaves out
        raise BundleError(f"{bundle.path} has an encoder: export it whole (--priors-only is for priors-only sets)")
    encoder = None if priors_only else bundle.torch_encoder()
    priors = dict(zip(bundle.sources, bundle.torch_priors()))
    rates = {p.cfg.sample_rate for p in priors.values()} | ({encoder.cfg.sample_rate} if encoder else set())
    if len(rates) != 1:
        raise BundleError(f"{bundle.path}: encoder and priors disagree on the sample rate ({sorted(rates)})")
    return bundle.card, encoder, priors


# ---------------------------------------------------------------------------------------------
# Export


@contextlib.contextmanager
def _quiet_export():
    """torch.onnx's progress lines and warnings are noise for a user of `rtsep export`."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _save(program: Any, path: Path, meta: dict[str, Any]) -> None:
    """Save an ONNXProgram with `meta` embedded as metadata_props, checked, atomically."""
    import onnx

    with replacing(path, suffix=".tmp.onnx") as tmp:
        program.save(os.fspath(tmp))
        model = onnx.load(os.fspath(tmp))
        props = {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()}
        onnx.helper.set_model_props(model, props)
        model.doc_string = f"rtsep {meta.get('graph')} graph"
        onnx.checker.check_model(model)
        onnx.save(model, os.fspath(tmp))


def _name_io(program: Any, inputs: Sequence[str], outputs: Sequence[str]) -> None:
    """Name the graph's inputs and outputs, first renaming any inner value that holds one of those
    names (torch.onnx's own `output_names` leaves such clashes, e.g. an inner "mean" node)."""
    graph = program.model.graph
    wanted = list(inputs) + list(outputs)
    io = list(graph.inputs) + list(graph.outputs)
    if len(io) != len(wanted):
        raise RuntimeError(f"graph has {len(io)} inputs and outputs, expected {len(wanted)}")
    taken = {v.name for n in graph for v in n.outputs} | {v.name for v in io}
    for node in graph:
        for value in node.outputs:
            if value.name in wanted and not any(value is v for v in io):
                k = 1
                while f"{value.name}_{k}" in taken:
                    k += 1
                value.name = f"{value.name}_{k}"
                taken.add(value.name)
    for value, name in zip(io, wanted):
        value.name = name


class _Spectral(torch.nn.Module):
    """The STFT encoder between its transforms (`Encoder.spectral`), as a module to export."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encoder.spectral(spec)


def export_encoder(encoder: Encoder, path: Path, window: int, meta: dict[str, Any]) -> None:
    """encoder.onnx with dynamic batch and time (time a multiple of the encoder stride). An STFT encoder
    is exported between its transforms (spec -> mask logits, log-scale; `rtsep.stft_encoder`), with
    `interface: spectrum`, `n_fft` and `consistency` in its metadata."""
    from torch.export import Dim

    batch, frames = Dim("batch", min=1, max=4096), Dim("frames", min=2, max=1 << 22)
    if encoder.cfg.front == "stft":
        module, bins = _Spectral(encoder), encoder.stft.bins
        example, shapes = (torch.zeros(2, 2 * bins, window // encoder.cfg.stride),), {"spec": {0: batch, 2: frames}}
        names = (SPECTRAL_INPUTS, SPECTRAL_OUTPUTS)
        meta = {**meta, "interface": INTERFACE, "n_fft": encoder.cfg.n_fft, "consistency": encoder.cfg.consistency}
    else:
        module, example = encoder, (torch.zeros(2, 1, window),)
        shapes, names = {"mix": {0: batch, 2: encoder.cfg.stride * frames}}, (ENCODER_INPUTS, ENCODER_OUTPUTS)
    with _quiet_export(), torch.no_grad():
        program = torch.onnx.export(module, example, dynamo=True, verbose=False, dynamic_shapes=shapes)
    _name_io(program, *names)
    _save(program, path, meta)


def export_score(prior: FlowPrior, path: Path, window: int, meta: dict[str, Any]) -> None:
    """score_<source>.onnx with dynamic batch and time (time a multiple of the prior's squeeze)."""
    from torch.export import Dim

    batch, frames = Dim("batch", min=1, max=4096), Dim("frames", min=1, max=1 << 22)
    module = ScoreModule(score_graph(prior, length=window))
    example = (torch.zeros(2, 1, window), torch.full((2,), 0.1))
    with _quiet_export():
        program = torch.onnx.export(
            module, example, dynamo=True, verbose=False,
            dynamic_shapes={"x": {0: batch, 2: prior.cfg.squeeze * frames}, "sigma": {0: batch}})
    _name_io(program, SCORE_INPUTS, SCORE_OUTPUTS)
    _save(program, path, meta)


def export_step(priors: Sequence[FlowPrior], path: Path, window: int, meta: dict[str, Any]) -> None:
    """step.onnx with dynamic batch and time (time a multiple of the priors' squeeze)."""
    from torch.export import Dim

    q = priors[0].cfg.squeeze
    batch, frames = Dim("batch", min=1, max=4096), Dim("frames", min=1, max=1 << 22)
    module = StepModule(step_graph(priors, length=window))
    n = len(priors)
    example = (torch.zeros(2, n, window), torch.zeros(2, 1, window), torch.zeros(2, n, window),
               *(torch.full((2,), 0.1) for _ in range(4)))
    audio = {0: batch, 2: q * frames}
    with _quiet_export():
        program = torch.onnx.export(
            module, example, dynamo=True, verbose=False,
            dynamic_shapes={"x": audio, "mix": audio, "noise": audio, "sigma": {0: batch}, "eta": {0: batch},
                            "lik": {0: batch}, "proj": {0: batch}})
    _name_io(program, STEP_INPUTS, STEP_OUTPUTS)
    _save(program, path, meta)


def export_tf_grad(priors: Sequence[TFPrior], path: Path, meta: dict[str, Any]) -> None:
    """tf_grad.onnx with dynamic batch and frame count (`rtsep.nn.tfprior.mask_grad_graph`)."""
    from torch.export import Dim

    batch, frames = Dim("batch", min=1, max=4096), Dim("frames", min=2, max=1 << 20)
    module = TFGradModule(mask_grad_graph(list(priors)))
    n, bins = len(priors), priors[0].cfg.n_fft // 2 + 1
    b = n + 1
    example = (torch.zeros(b, n, 64, bins), torch.ones(b, 64, bins), torch.full((b,), 0.1), torch.ones(n))
    with _quiet_export():
        program = torch.onnx.export(
            module, example, dynamo=True, verbose=False,
            dynamic_shapes={"theta": {0: batch, 2: frames}, "mix_power": {0: batch, 1: frames}, "sigma": {0: batch},
                            "weight": None})
    _name_io(program, TF_GRAD_INPUTS, TF_GRAD_OUTPUTS)
    _save(program, path, meta)


def check_tf_grad(sess: Any, priors: Sequence[TFPrior], inputs: dict[str, np.ndarray], rng: np.random.Generator
                  ) -> dict[str, dict[str, Any]]:
    """tf_grad.onnx against `mask_grad_function` on each named (B, 1, T) input's STFT power, with random
    mask logits and levels across the priors' range (relative tolerance: gradients reach ~1e3)."""
    fn = mask_grad_function(list(priors))
    cfg = priors[0].cfg
    out = {}
    for name, clean in inputs.items():
        t = clean.shape[-1] - clean.shape[-1] % cfg.hop
        power = stft_power(torch.from_numpy(clean[:, 0, :t]), cfg.n_fft, cfg.hop).numpy()
        b, frames, bins = power.shape
        feed = {"theta": (2 * rng.standard_normal((b, len(priors), frames, bins))).astype(np.float32),
                "mix_power": power.astype(np.float32),
                "sigma": np.geomspace(cfg.sigma_max, cfg.sigma_min, b).astype(np.float32),
                "weight": rng.uniform(0.5, 1.5, len(priors)).astype(np.float32)}
        got = sess.run(list(TF_GRAD_OUTPUTS), feed)
        out[name] = _compare(got, fn(*(torch.from_numpy(feed[k]) for k in TF_GRAD_INPUTS)))
    return out


# ---------------------------------------------------------------------------------------------
# Parity


def _compare(got: Sequence[np.ndarray], want: Sequence[torch.Tensor], absolute: bool = False) -> dict[str, Any]:
    """Max abs error over all outputs, the largest |reference|, and whether every output is
    within TOLERANCE (`absolute`) or TOLERANCE * max(1, its largest |reference|)."""
    errs = [float(np.max(np.abs(g - w.detach().numpy()))) for g, w in zip(got, want)]
    scales = [float(w.detach().abs().max()) for w in want]
    ok = all(e < TOLERANCE * (1.0 if absolute else max(1.0, m)) for e, m in zip(errs, scales))
    return {"error": max(errs), "scale": max(scales), "ok": ok, "draws": 1}


def _clips(audio: Sequence[np.ndarray] | np.ndarray | None, window: int) -> list[np.ndarray]:
    """Real audio as (1, 1, window) float32 arrays: mono, first `window` samples, zero-padded."""
    if audio is None:
        return []
    if isinstance(audio, np.ndarray) and audio.ndim == 1:
        audio = [audio]
    clips = []
    for a in audio:
        a = np.asarray(a, dtype=np.float32)
        if a.ndim == 2:  # (channels, samples)
            a = a.mean(axis=0)
        a = a.reshape(-1)[:window]
        clips.append(np.pad(a, (0, window - a.size))[None, None])
    return clips


def check_encoder(sess: Any, encoder: Encoder, inputs: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """The encoder graph against torch on each named (B, 1, T) input (see `_compare`)."""
    out, run = {}, encoder_runner(sess)
    for name, mix in inputs.items():
        got = run(mix[:, 0])
        with torch.no_grad():
            want = encoder(torch.from_numpy(mix))
        out[name] = _compare(got, want, absolute=True)
    return out


def check_step(sess: Any, priors: Sequence[FlowPrior], inputs: dict[str, np.ndarray], rng: np.random.Generator,
               langevin: LangevinConfig, draws: int = 3) -> dict[str, dict[str, Any]]:
    """The step graph against `step_function` on each named (B, 1, T) clean input, as the sampler
    runs it: every source starts as the input plus noise, then the card's whole Langevin schedule
    (annealed steps and the Tweedie step) runs through both, each step from torch's last state.
    Absolute tolerance: the outputs are audio. The score inside a step jumps where a ReLU of the
    priors flips on float32 rounding (see `check_score`: up to ~0.1, times the step's eta ~1e-3,
    just over the tolerance; seen on toy4): such a draw is redrawn with fresh noise, up to `draws`
    in all, while a translation error fails every draw."""
    step = step_function(list(priors))
    cfg = replace(langevin, steps=max(langevin.steps, 4))
    n, out = len(priors), {}
    for name, clean in inputs.items():
        for draw in range(1, draws + 1):
            x = clean.repeat(n, axis=1) + cfg.sigma_start * rng.standard_normal((clean.shape[0], n, clean.shape[-1]))
            x = x.astype(np.float32)
            mix = x.mean(axis=1, keepdims=True) + 0.01 * rng.standard_normal(clean.shape).astype(np.float32)
            worst = {"error": 0.0, "scale": 0.0, "ok": True, "draws": draw}
            for st in schedule(cfg, x.shape, rng):
                feed = {"x": x, "mix": mix, "noise": st.noise, "sigma": st.sigma, "eta": st.eta, "lik": st.lik,
                        "proj": st.proj}
                got = sess.run(list(STEP_OUTPUTS), feed)
                want = step(*(torch.from_numpy(feed[k]) for k in STEP_INPUTS))
                res = _compare(got, [want], absolute=True)
                worst = {"error": max(worst["error"], res["error"]), "scale": max(worst["scale"], res["scale"]),
                         "ok": worst["ok"] and res["ok"], "draws": draw}
                x = want.detach().numpy()
            if worst["ok"]:
                break
        out[name] = worst
    return out


def check_score(sess: Any, prior: FlowPrior, inputs: dict[str, np.ndarray], rng: np.random.Generator,
                draws: int = 3) -> dict[str, dict[str, Any]]:
    """A score graph against `FlowPrior.score` and `log_prob` on each named (B, 1, T) clean input,
    every item at every annealing level as the sampler sees it: x = s + sigma * noise.

    The prior's WaveNets end in a ReLU, so its score jumps where a ReLU input crosses zero:
    float32 rounding that differs between torch and onnxruntime by 1e-8 there flips one ReLU
    and changes the score by up to ~0.1 over that unit's receptive field (log_prob, being
    continuous, is unaffected). Such a draw is redrawn with fresh noise, up to `draws` in all;
    a translation error fails every draw. "draws" in the result says how many were used.
    """
    sigmas = np.asarray(prior.cfg.sigmas or [prior.cfg.sigma_max, prior.cfg.sigma_min], dtype=np.float32)
    out = {}
    for name, clean in inputs.items():
        s = np.repeat(clean, len(sigmas), axis=0)
        sig = np.tile(sigmas, clean.shape[0])
        for draw in range(1, draws + 1):
            x = (s + sig[:, None, None] * rng.standard_normal(s.shape)).astype(np.float32)
            got = sess.run(list(SCORE_OUTPUTS), {"x": x, "sigma": sig})
            xt, st = torch.from_numpy(x), torch.from_numpy(sig)
            score = prior.score(xt, st)
            with torch.no_grad():
                log_prob = prior.shape_log_prob_sum(xt, st) / xt.shape[-1]
            lp = _compare(got[1:], [log_prob])
            res = _compare(got, (score, log_prob))
            res["draws"] = draw
            if res["ok"] or not lp["ok"]:
                break
        out[name] = res
    return out


def _shapes(sess: Any) -> dict[str, dict[str, list]]:
    return {"inputs": {a.name: list(a.shape) for a in sess.get_inputs()},
            "outputs": {a.name: list(a.shape) for a in sess.get_outputs()}}


# ---------------------------------------------------------------------------------------------


def export_bundle(model_dir: Path | str | Bundle, out: Path | None = None, window: int = WINDOW, check: bool = True,
                  audio: Sequence[np.ndarray] | np.ndarray | None = None, priors_only: bool = False,
                  seed: int = 0, verbose: bool = False, scores: bool = False) -> dict[str, Any]:
    """Export MODEL_DIR's encoder and Langevin step (and with `scores` each prior's score) to ONNX
    in `out` (default MODEL_DIR/onnx/).

    `window`: samples the graphs are traced and checked at (they accept any length that is a
    multiple of `time_multiple`). `check`: compare onnxruntime against torch on random audio at
    `window` and at a second length, and on `audio` (mono arrays (samples,) or (channels,
    samples) at the model's sample rate, cropped/padded to `window`), raising RtsepError when an
    output is off by more than the tolerance in the module doc. `priors_only`: a set without an
    encoder (its ONNX backend starts every source from the whole mixture; its chain's moves need `scores`).
    Returns the manifest written to OUT/manifest.json (also summarised in card.json "onnx"); its
    "graphs"[file]["max_abs_error"] holds the errors per input.
    Raises BundleError when MODEL_DIR cannot be exported (no card, no weights, weights that do
    not match their config).
    """
    from . import runtime

    card, encoder, priors = load_models(model_dir, priors_only=priors_only)
    model_dir = Bundle.load(model_dir, verify=False).path
    langevin = LangevinConfig.from_card(card, model_dir)
    out = model_dir / "onnx" if out is None else Path(out)
    multiple = math.lcm(*(p.cfg.squeeze for p in priors.values()), *([encoder.cfg.stride] if encoder else []))
    if window < 2 * multiple or window % multiple:
        raise RtsepError(f"window {window} must be a positive multiple of {multiple} (at least {2 * multiple})")
    sources = list(priors)
    sample_rate = next(iter(priors.values())).cfg.sample_rate
    common = {"sample_rate": sample_rate, "sources": sources, "window": window, "time_multiple": multiple,
              "sigmas": {s: list(p.cfg.sigmas) for s, p in priors.items()}, "rtsep_version": __version__}
    out.mkdir(parents=True, exist_ok=True)

    files: dict[str, tuple[str, Any]] = {}
    if encoder is not None:
        meta = {**common, "graph": "encoder", "stride": encoder.cfg.stride,
                "receptive_field": encoder.cfg.receptive_field}
        export_encoder(encoder, out / ENCODER_FILE, window, meta)
        files[ENCODER_FILE] = ("encoder", encoder)
    squeezes = {p.cfg.squeeze for p in priors.values()}
    if len(squeezes) != 1:
        raise BundleError(f"{model_dir}: the priors disagree on squeeze ({sorted(squeezes)}); "
                          "one step graph serves all")
    meta = {**common, "graph": "step", "squeeze": squeezes.pop(), "levels": {s: p.cfg.level for s, p in priors.items()},
            "receptive_field": max(p.receptive_field for p in priors.values())}
    export_step(list(priors.values()), out / STEP_FILE, window, meta)
    files[STEP_FILE] = ("step", list(priors.values()))
    tf_priors = Bundle.load(model_dir, verify=False).torch_tf_priors()
    if tf_priors:
        c = tf_priors[0].cfg
        meta = {**common, "graph": "tf_grad", "n_fft": c.n_fft, "hop": c.hop, "bands": c.bands}
        export_tf_grad(tf_priors, out / TF_GRAD_FILE, meta)
        files[TF_GRAD_FILE] = ("tf_grad", tf_priors)
    else:  # a graph of an earlier export would no longer be in the manifest
        (out / TF_GRAD_FILE).unlink(missing_ok=True)
    if not scores:  # graphs of an earlier export with scores=True would no longer be in the manifest
        for stale in out.glob("score_*.onnx"):
            stale.unlink()
    for source, prior in priors.items() if scores else ():
        meta = {**common, "graph": "score", "source": source, "squeeze": prior.cfg.squeeze,
                "sigma_min": prior.cfg.sigma_min, "sigma_max": prior.cfg.sigma_max,
                "receptive_field": prior.receptive_field}
        export_score(prior, out / score_file(source), window, meta)
        files[score_file(source)] = ("score", prior)

    rng = np.random.default_rng(seed)
    short = max(2 * multiple, (window // 2 // multiple) * multiple)
    if short == window:
        short = window + multiple
    inputs = {f"random_{window}": (0.1 * rng.standard_normal((2, 1, window))).astype(np.float32),
              f"random_{short}": (0.1 * rng.standard_normal((1, 1, short))).astype(np.float32)}
    inputs.update({f"audio{i}": clip for i, clip in enumerate(_clips(audio, window))})

    graphs: dict[str, Any] = {}
    failures = []
    for name, (kind, model) in files.items():
        path = out / name
        sess = runtime.session(path, provider="cpu", warmup=False)
        entry: dict[str, Any] = {"sha256": sha256(path), "bytes": path.stat().st_size, **_shapes(sess)}
        if check:
            errs = (check_encoder(sess, model, inputs) if kind == "encoder"
                    else check_step(sess, model, inputs, rng, langevin) if kind == "step"
                    else check_tf_grad(sess, model, inputs, rng) if kind == "tf_grad"
                    else check_score(sess, model, inputs, rng))
            entry["max_abs_error"] = {k: r["error"] for k, r in errs.items()}
            entry["max_abs_output"] = max(r["scale"] for r in errs.values())
            entry["worst_error"] = max(r["error"] for r in errs.values())
            if any(r["draws"] > 1 for r in errs.values()):
                entry["noise_draws"] = {k: r["draws"] for k, r in errs.items()}
            bad = [k for k, r in errs.items() if not r["ok"]]
            if verbose:
                print(f"{name}: max abs error {entry['worst_error']:.2e} (max |output| {entry['max_abs_output']:.3g})")
            if bad:
                failures.append(f"{name} on {', '.join(bad)}: max abs error {entry['worst_error']:.2e}")
        graphs[name] = entry

    manifest = {"rtsep_version": __version__, "sample_rate": sample_rate, "sources": sources,
                "window": window, "time_multiple": multiple, "dynamic_axes": ["batch", "time"],
                "tolerance": TOLERANCE if check else None, "graphs": graphs}
    write_text(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    if failures:
        raise RtsepError(f"ONNX graphs differ from torch: {'; '.join(failures)} (see {out / MANIFEST})")
    try:
        where = str(out.resolve().relative_to(model_dir.resolve()))
    except ValueError:
        where = str(out.resolve())
    if encoder is None:  # graphs of an earlier full export would no longer match the card's chain
        (out / ENCODER_FILE).unlink(missing_ok=True)
    seal(model_dir)  # the weights these graphs were made from
    update_card(model_dir, "onnx", value={
        "dir": where, "window": window, "time_multiple": multiple, "rtsep_version": __version__,
        "graphs": {n: g["sha256"] for n, g in graphs.items()},
        "max_abs_error": {n: g.get("worst_error") for n, g in graphs.items()}})
    return {**manifest, "dir": str(out)}
