"""The `rtsep` command line: parses, validates, shows progress and maps errors; nothing else."""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console

from .errors import RtsepError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Real-time audio source separation with deep generative priors.")
data_app = typer.Typer(no_args_is_help=True, help="Make training and evaluation data.")
train_app = typer.Typer(no_args_is_help=True, help="Train priors and encoders.")
eval_app = typer.Typer(no_args_is_help=True, help="Measure priors and separation.")
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")

console = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 1) -> None:
    """Print one line on stderr and exit non-zero."""
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM (docker stop, systemd, CI timeouts) raised like Ctrl-C, so the same cleanup runs."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a process killed by it


def handle_sigterm() -> None:
    """Turn SIGTERM into `Terminated` in the main thread; a second one while cleaning up is ignored
    (the first already unwinds; a supervisor escalates to SIGKILL if it must)."""
    import signal

    def terminate(signum, frame) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    signal.signal(signal.SIGTERM, terminate)


def interrupted(exc: KeyboardInterrupt) -> int:
    """Say in one line how the run was stopped; the exit code for it (130 Ctrl-C, 143 SIGTERM)."""
    console.print("terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted", highlight=False)
    return getattr(exc, "exit_code", 130)


def one_line_errors(fn: Callable) -> Callable:
    """Map rtsep's own errors (bad input) to one line and an exit code; Ctrl-C to exit 130, SIGTERM 143."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RtsepError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            raise typer.Exit(interrupted(exc))
        except MemoryError:
            fail("out of memory", 1)

    return wrapper


def write_json(path: Path, obj) -> None:
    """Write a JSON report atomically (temp name, then rename)."""
    import json

    from .atomic import write_text

    write_text(path, json.dumps(obj, indent=2))


def set_threads(threads: int | None) -> None:
    """Pin torch's CPU threads: two jobs with one thread each beat two fighting over two cores."""
    if threads:
        import torch

        torch.set_num_threads(threads)


def progress_cb(progress, task) -> Callable[[int, int], None]:
    return lambda done, total: progress.update(task, completed=done, total=total)


@data_app.command("toy4")
@one_line_errors
def data_toy4(
    out_dir: Path = typer.Argument(..., help="Output folder OUT/<split>/<source>/*.wav"),
    clips: int = typer.Option(200, min=1, help="Training clips (valid and test get 10% each)."),
    seconds: float = typer.Option(1.0, min=0.05, help="Clip length in seconds."),
    sample_rate: int = typer.Option(16000, min=8000, max=192000, help="Sample rate in Hz."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same files."),
) -> None:
    """The thesis's toy set: sine, square, saw and triangle at random piano pitches."""
    from .datasets.toy4 import make_toy4
    from .progress import bar

    with bar() as progress:
        task = progress.add_task("toy4", total=None, info="")
        m = make_toy4(out_dir, clips, seconds, sample_rate, seed, progress_cb(progress, task))
    out.print(f"wrote toy4 {m['splits']} to {out_dir}")


@data_app.command("music4")
@one_line_errors
def data_music4(
    out_dir: Path = typer.Argument(..., help="Output folder OUT/<split>/<source>/*.wav"),
    clips: int = typer.Option(200, min=1, help="Training clips (valid and test get 10% each)."),
    seconds: float = typer.Option(4.0, min=0.5, help="Clip length in seconds."),
    sample_rate: int = typer.Option(16000, min=8000, max=192000, help="Sample rate in Hz."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same files."),
    soundfont: Optional[list[Path]] = typer.Option(None, help="GM soundfont; repeat for several, each stem draws "
                                                   "one (default: every installed training bank, FluidR3_GM only "
                                                   "for v1, MuseScore General with --heldout)."),
    heldout: bool = typer.Option(False, "--heldout", help="Only a test split of CLIPS clips, for evaluation (default soundfont MuseScore General)."),
    generator: str = typer.Option("v2", help="v2: several banks, 60-180 bpm, meters, swing, per-stem augmentation; "
                                  "v1: the sessions 1-19 sets (FluidR3, 4/4, 80-160 bpm)."),
    meters: str = typer.Option("4/4,3/4,6/8", help="Comma-separated meters the v2 songs draw from."),
    jobs: int = typer.Option(2, min=1, help="FluidSynth renders in parallel."),
) -> None:
    """Random MIDI songs rendered per stem with FluidSynth: bass, drums, guitar, piano.

    Rerun on the same folder with the same seed and options (more --clips, or after an interruption) and
    only the missing clips are rendered."""
    from .datasets.music4 import check_music4, make_music4
    from .progress import bar

    meter_list = tuple(x.strip() for x in meters.split(",") if x.strip())
    check_music4(clips, seconds, sample_rate, soundfont or None, heldout, generator, meter_list)
    with bar() as progress:
        task = progress.add_task("music4", total=None, info="")
        m = make_music4(out_dir, clips, seconds, sample_rate, seed, soundfont=soundfont or None,
                        progress=progress_cb(progress, task), heldout=heldout, generator=generator,
                        meters=meter_list, jobs=jobs)
    out.print(f"wrote music4 {m['splits']} to {out_dir}")


@data_app.command("distill")
@one_line_errors
def data_distill(
    model_dir: Path = typer.Argument(..., help="Model directory whose priors label the mixtures."),
    out_dir: Path = typer.Argument(..., help="Output folder OUT/train/<source>/*.wav (the chain's estimates)."),
    data: Path = typer.Option(..., help="Source-only set the training mixtures are drawn from (only their mix is used)."),
    clips: int = typer.Option(96, min=1, help="Mixtures to separate."),
    seconds: float = typer.Option(0.512, min=0.01, help="Mixture length in seconds (cut to a multiple of the hop)."),
    seed: int = typer.Option(7, help="Mixture i depends only on (seed, i)."),
    batch: int = typer.Option(8, min=1, help="Mixtures per chain batch."),
    steps: int = typer.Option(200, min=1, help="Mask-chain steps."),
    sigma_start: float = typer.Option(0.3, min=1e-6), sigma_end: float = typer.Option(0.01, min=1e-6),
    mask_lr: float = typer.Option(0.1, min=0.0), temperature: float = typer.Option(0.0, min=0.0),
    relabel_every: int = typer.Option(20, min=0), swaps: int = typer.Option(2, min=0),
    swap_steps: int = typer.Option(40, min=1), swap_sigma: float = typer.Option(0.05, min=1e-6),
    shard: str = typer.Option("0/1", help="I/N: this process separates batches j with j % N == I (run N at once)."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: all cores)."),
) -> None:
    """Label stem-free mixtures with the priors' cold mask chain + swap moves, for `train encoder --objective distill`."""
    from dataclasses import replace

    from .distill import CHAIN, DistillMixtures, make_distill_set
    from .progress import bar

    set_threads(threads)
    index, count = parse_shard(shard)
    mixtures = DistillMixtures(clips=clips, seconds=seconds, seed=seed, batch=batch)
    chain = replace(CHAIN, steps=steps, sigma_start=sigma_start, sigma_end=sigma_end, mask_lr=mask_lr,
                    temperature=temperature, relabel_every=relabel_every, swaps=swaps, swap_steps=swap_steps,
                    swap_sigma=swap_sigma)
    with bar() as progress:
        task = progress.add_task(f"distill {shard}", total=None, info="")
        m = make_distill_set(model_dir, data, out_dir, mixtures, chain, (index, count), progress_cb(progress, task))
    out.print(f"wrote {clips} labelled mixtures to {out_dir}" if m else f"shard {shard} done; other shards unfinished")


@train_app.command("prior")
@one_line_errors
def train_prior_cmd(
    source: str = typer.Option(..., help="Source name: a subfolder of DATA."),
    data: Path = typer.Option(..., help="Data folder DATA/train/<source>/*.wav or DATA/<source>/*.wav"),
    out_dir: Path = typer.Option(..., "--out", help="Model directory (created or resumed)."),
    steps: int = typer.Option(3000, min=1, help="Total optimiser steps (resumes where it stopped)."),
    minutes: Optional[float] = typer.Option(None, help="Stop after this many minutes (checkpointed)."),
    batch: Optional[int] = typer.Option(None, min=1, help="Excerpts per step (default: 16 wave, 32 tf)."),
    segment: int = typer.Option(8192, min=256, help="Training excerpt length in samples."),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    hidden: Optional[int] = typer.Option(None, min=4, help="Channels in each coupling (default: 32 WaveNet "
                                         "channels wave, 128 MLP units tf)."),
    flows: int = typer.Option(6, min=1, help="Number of affine couplings."),
    layers: int = typer.Option(4, min=1, help="Dilated layers per coupling."),
    mixing: str = typer.Option("lu", help="Channel mixing between couplings: lu (learned 1x1, Glow) or flip."),
    sample_rate: int = typer.Option(16000, min=8000),
    gain_min: Optional[float] = typer.Option(None, help="Random gain augmentation, lower bound (default: 0.5 "
                                             "wave, 0.25 tf)."),
    gain_max: Optional[float] = typer.Option(None, help="Random gain augmentation, upper bound (default: 1 wave, 2 tf)."),
    contrast: float = typer.Option(0.0, min=0.0, help="Weight of the margin term: own excerpts must out-score "
                                   "themselves with another source leaked in (DATA's other sources, no stems)."),
    contrast_margin: float = typer.Option(0.5, min=0.0, help="That margin in nats/sample, for a negative that is "
                                          "all other source."),
    init_from: Optional[Path] = typer.Option(None, help="Start from this model directory's prior of SOURCE "
                                             "(its architecture and level; fresh optimiser): fine-tuning."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: all cores)."),
    domain: str = typer.Option("wave", help="wave: a flow on the waveform; tf: a flow on the log band energies "
                               "of STFT frames, which the mask chain climbs (rtsep.nn.tfprior)."),
    frames: int = typer.Option(64, min=4, help="tf: STFT frames per training excerpt."),
    bands: int = typer.Option(80, min=8, help="tf: band energies per frame."),
) -> None:
    """Train one source's noise-conditioned flow prior on that source alone (or fine-tune one)."""
    from .nn.flow import MIXINGS, PriorConfig

    set_threads(threads)
    if domain not in ("wave", "tf"):
        fail(f"--domain must be wave or tf, not {domain!r}")
    if domain == "tf":
        from .nn.tfprior import TFPriorConfig
        from .train.tfprior import TFPriorTraining, train_tf_prior

        tf_cfg = TFPriorConfig(sample_rate=sample_rate, bands=bands, hidden=hidden or 128, layers=flows, seed=seed)
        tf_tr = TFPriorTraining(steps=steps, batch=batch or 32, frames=frames, lr=lr, seed=seed,
                                gain_min=0.25 if gain_min is None else gain_min,
                                gain_max=2.0 if gain_max is None else gain_max)
        entry = train_tf_prior(source, data, out_dir, tf_cfg, tf_tr, minutes=minutes, init_from=init_from)
        t = entry["training"]
        out.print(f"TF prior {source}: {t['steps_done']} steps in {t['seconds']:.0f} s, valid log p "
                  f"{t['valid_log_prob_per_frame']:.1f} nats/frame")
        return
    from .train.prior import PriorTraining, train_prior

    if segment % 16:
        fail("--segment must be a multiple of 16")
    if mixing not in MIXINGS:
        fail(f"--mixing must be {' or '.join(MIXINGS)}, not {mixing!r}")
    cfg = PriorConfig(source=source, sample_rate=sample_rate, hidden=hidden or 32, n_flows=flows, layers=layers,
                      mixing=mixing)
    tr = PriorTraining(steps=steps, batch=batch or 16, segment=segment, lr=lr, seed=seed,
                       gain_min=0.5 if gain_min is None else gain_min, gain_max=1.0 if gain_max is None else gain_max,
                       contrast=contrast, contrast_margin=contrast_margin)
    entry = train_prior(source, data, out_dir, cfg, tr, minutes=minutes, init_from=init_from)
    t = entry["training"]
    out.print(f"prior {source}: {t['steps_done']} steps in {t['seconds']:.0f} s, valid nll {t['valid_nll']:.3f} nats/sample")


def main() -> None:
    handle_sigterm()
    try:
        app()
    except KeyboardInterrupt as exc:  # outside a command (while parsing or importing)
        sys.exit(interrupted(exc))


@eval_app.command("priors")
@one_line_errors
def eval_priors_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory with trained priors."),
    data: Path = typer.Option(..., help="Data folder DATA/test/<source>/*.wav or DATA/<source>/*.wav"),
    split: str = typer.Option("test", help="Split to read when DATA has splits."),
    clips: int = typer.Option(32, min=1, help="Held-out excerpts per source."),
    seed: int = typer.Option(1234),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the result as JSON."),
    plot: Optional[Path] = typer.Option(None, help="Write a heatmap per sigma (PNG)."),
    domain: str = typer.Option("wave", help="wave: the waveform flows; tf: the TF priors (nats per frame)."),
) -> None:
    """Cross-likelihood matrix of the priors: each column's best prior should be its own."""
    from rich.table import Table

    from .prior_eval import evaluate_priors, evaluate_tf_priors, plot_matrix
    from .progress import bar

    if domain not in ("wave", "tf"):
        fail(f"--domain must be wave or tf, not {domain!r}")
    unit = "nats/sample" if domain == "wave" else "nats/frame"
    if domain == "tf":
        res = evaluate_tf_priors(model_dir, data, split=split, clips=clips, seed=seed)
    else:
        with bar(transient=True) as progress:
            task = progress.add_task("priors", total=None, info="")
            res = evaluate_priors(model_dir, data, split=split, clips=clips, seed=seed,
                                  progress=progress_cb(progress, task))
    src = res["sources"]
    for sigma, mat, margin in zip(res["sigmas"], res["loglik"], res["min_margin_per_sigma"]):
        t = Table(title=f"sigma={sigma:g}  min margin {margin:+.3f} {unit}", title_justify="left")
        t.add_column("prior \\ data")
        for s in src:
            t.add_column(s, justify="right")
        for p, row in zip(src, mat):
            best = [max(r[j] for r in mat) for j in range(len(src))]
            t.add_row(p, *[f"[bold]{v:.3f}[/bold]" if v == best[j] else f"{v:.3f}" for j, v in enumerate(row)])
        out.print(t)
    out.print(f"discriminative at every sigma: {res['discriminative']} (smallest margin {res['min_margin']:+.3f} {unit})")
    if domain == "tf":
        out.print(f"smallest margin per sample: {res['min_margin_per_sample']:+.4f} nats; own prior best on "
                  + ", ".join(f"{s} {min(w[s] for w in res['own_prior_wins']):.0%}" for s in src)
                  + " of excerpts (worst sigma)")
        if json_out:
            write_json(json_out, res)
        return
    for sigma, gc, gn in zip(res["sigmas"], res["score_rms_clean"], res["score_rms_noisy"]):
        out.print(f"sigma={sigma:g} score RMS clean/noisy: " + ", ".join(f"{s} {gc[s]:.3g}/{gn[s]:.3g}" for s in src))
    if json_out:
        write_json(json_out, res)
    if plot:
        plot_matrix(res, plot)


@train_app.command("chain")
@one_line_errors
def train_chain_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory with an encoder and TF priors."),
    data: Path = typer.Option(..., help="A generated set (DATA/train/<source>/*.wav, the same clips for every source)."),
    chain_steps: int = typer.Option(4, "--chain-steps", min=0, max=16, help="K, the chain's steps (0 only with "
                                    "--encoder-lr: the fine-tune's equal-steps control)."),
    steps: int = typer.Option(200, min=1, help="Optimiser steps (resumes where it stopped)."),
    batch: int = typer.Option(4, min=1),
    seconds: float = typer.Option(2.0, min=0.5, help="Training excerpt length."),
    lr: float = typer.Option(0.03),
    seed: int = typer.Option(0),
    per_source: bool = typer.Option(True, "--per-source/--shared", help="A step size per source and step, or "
                                    "one per step."),
    encoder_lr: float = typer.Option(0.0, "--encoder-lr", min=0.0, help="Also fine-tune the encoder through the "
                                     "K steps at this Adam step size, e.g. 1e-4 (0: encoder frozen)."),
    minutes: Optional[float] = typer.Option(None, help="Stop after this many minutes (checkpointed)."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: all cores)."),
) -> None:
    """Learn the TF chain's levels, step sizes and prior weights through its K unrolled steps; the card's
    chain becomes it (priors unchanged; the encoder too unless --encoder-lr)."""
    set_threads(threads)
    from .train.chain import ChainTraining, train_chain

    rec = train_chain(model_dir, data, ChainTraining(steps=steps, chain_steps=chain_steps, batch=batch,
                                                     seconds=seconds, lr=lr, seed=seed, per_source=per_source,
                                                     encoder_lr=encoder_lr),
                      minutes=minutes)
    v = rec["valid_si_sdri"]
    out.print("valid SI-SDRi encoder -> chain: " + ", ".join(f"{s} {v['encoder'][s]:+.2f} -> {v['chain'][s]:+.2f}"
                                                             for s in v["encoder"]))
    if "encoder_tuned" in v:
        out.print("valid SI-SDRi of the fine-tuned encoder alone: "
                  + ", ".join(f"{s} {v['encoder_tuned'][s]:+.2f}" for s in v["encoder"]))
    out.print(f"learned: {rec['learned']}; run `rtsep export {model_dir}` for the ONNX graphs")


@train_app.command("encoder")
@one_line_errors
def train_encoder_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory holding trained priors."),
    data: Path = typer.Option(..., help="Source-only data folder DATA/train/<source>/*.wav or DATA/<source>/*.wav"),
    objective: str = typer.Option("seed", help="seed (KL to the priors + mixture term), distill (regress a `rtsep data distill` set: the priors' own separations, no stems) or supervised (comparison)."),
    steps: int = typer.Option(2000, min=1),
    minutes: Optional[float] = typer.Option(None, help="Stop after this many minutes (checkpointed)."),
    batch: int = typer.Option(8, min=1),
    segment: int = typer.Option(16384, min=256),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    gain_min: float = typer.Option(0.5),
    gain_max: float = typer.Option(1.0),
    kl_sigma: float = typer.Option(0.01, help="Final noise level of the prior used in the KL term."),
    kl_sigma_start: float = typer.Option(0.3, help="Initial KL noise level, annealed down to --kl-sigma (0: off)."),
    active_start: float = typer.Option(1.0, min=0.0, max=1.0, help="Initial chance a source plays in a mixture (annealed to 1)."),
    noise_floor: float = typer.Option(1e-3, min=0.0, help="Smallest std of q (seed objective): no estimate is exactly silent."),
    pitch_shift: float = typer.Option(0.0, min=0.0, max=24.0, help="Shift each excerpt's pitch by a random amount in +-this many semitones before mixing."),
    gamma: float = typer.Option(0.01, help="Std of the Gaussian mixture likelihood."),
    band_weight: float = typer.Option(0.0, min=0.0, help="Seed objective: weight per sample of the band-shape prior "
                                      "(log energy share per octave band, fitted to each source's solo excerpts; 0: off)."),
    bands_per_octave: int = typer.Option(1, min=1, max=12, help="Resolution of the band-shape prior."),
    max_scale: float = typer.Option(1.0, min=1e-6, help="Largest std of q per sample (stored in the encoder's config): "
                                    "q's entropy pays for wide posteriors, whose samples the priors judge as noise."),
    loss: str = typer.Option("mse", help="Supervised/distill regression loss: mse (waveform) or sdr (soft-thresholded "
                             "SNR per source, weighs quiet sources like loud ones)."),
    coherent: float = typer.Option(0.0, min=0.0, max=1.0, help="Supervised: share of training mixtures made of one "
                                   "clip's own stems (aligned songs) instead of independent excerpts."),
    valid_every: int = typer.Option(0, min=0, help="SI-SDRi on the data's valid split every this many steps (a "
                                    "multiple of 50; stored as the card's validation curve; 0: off)."),
    filters: int = typer.Option(128), hidden: int = typer.Option(128), blocks: int = typer.Option(8),
    repeats: int = typer.Option(1), bottleneck: int = typer.Option(64, min=8),
    front: str = typer.Option("learned", help="learned (Conv-TasNet basis) or stft (ratio masks: cannot invent content)."),
    n_fft: int = typer.Option(1024, help="STFT size of the stft front end (its hop is --stride)."),
    stride: int = typer.Option(16, help="Frame hop of the encoder in samples."),
    arch: str = typer.Option("tcn", help="stft front end: tcn (one bottleneck per frame) or bandsplit (features "
                             "per band of bins, blocks along time and across bands; --bottleneck per band)."),
    split_bands: int = typer.Option(24, min=1, help="Bands of the bandsplit arch (narrow at the bottom)."),
    init_from: Optional[Path] = typer.Option(None, help="Start from this model directory's encoder (its config; "
                                             "fresh optimiser), e.g. the seed objective after --objective distill."),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: all cores)."),
) -> None:
    """Train the amortized posterior q(s_k | m) of every source with the seed objective."""
    set_threads(threads)
    from .card import read_card
    from .nn.encoder import EncoderConfig
    from .train.encoder import EncoderTraining, train_encoder

    if front not in ("learned", "stft"):
        fail(f"unknown --front {front!r} (learned or stft)")
    if arch not in ("tcn", "bandsplit") or (arch == "bandsplit" and front != "stft"):
        fail(f"unknown --arch {arch!r} for --front {front} (tcn, or bandsplit with --front stft)")
    if front == "stft" and n_fft % (2 * stride):
        fail(f"--stride {stride} must divide --n-fft / 2 = {n_fft // 2} for the stft front end")
    card = read_card(model_dir)
    cfg = EncoderConfig(sources=list(card.get("priors", {})), sample_rate=card.get("sample_rate", 16000),
                        filters=filters, hidden=hidden, blocks=blocks, repeats=repeats, bottleneck=bottleneck,
                        front=front, n_fft=n_fft, arch=arch, split_bands=split_bands,
                        stride=stride, log_scale_max=math.log(max_scale))
    tr = EncoderTraining(objective=objective, steps=steps, batch=batch, segment=segment, lr=lr, seed=seed,
                         gain_min=gain_min, gain_max=gain_max, kl_sigma=kl_sigma, gamma=gamma,
                         kl_sigma_start=kl_sigma_start or None, active_start=active_start,
                         noise_floor=noise_floor, pitch_shift=pitch_shift, band_weight=band_weight,
                         bands_per_octave=bands_per_octave, loss=loss, coherent=coherent, valid_every=valid_every)
    entry = train_encoder(model_dir, data, cfg, tr, minutes=minutes, init_from=init_from)
    t = entry["training"]
    out.print(f"encoder ({objective}): {t['steps_done']} steps in {t['seconds']:.0f} s")


@train_app.command("highband")
@one_line_errors
def train_highband_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory with an encoder (exported or not)."),
    data: Path = typer.Option(..., help="Stems rendered at --sample-rate (`rtsep data music4 --sample-rate 44100`), "
                              "DATA/{train,valid}/<source>/*.wav."),
    sample_rate: int = typer.Option(44100, "--sample-rate", help="The input rate it learns to complete (44.1 kHz "
                                    "serves 48 kHz too: its bands are in Hz)."),
    steps: int = typer.Option(1500, min=1), hidden: int = typer.Option(32, min=4), lr: float = typer.Option(3e-3),
    clips: Optional[int] = typer.Option(None, min=1, help="Training clips used (default all)."),
    seed: int = typer.Option(0),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: all cores)."),
) -> None:
    """Learn how the band above the model's Nyquist is shared among the stems (44.1/48 kHz input): a small
    network on the stems' guide-band energies and the residual's spectral shape, instead of the rule."""
    set_threads(threads)
    from .train.highband import HighBandTraining, train_highband

    rec = train_highband(model_dir, data, sample_rate, HighBandTraining(steps=steps, hidden=hidden, lr=lr,
                                                                        clips=clips, seed=seed))
    v = rec["valid"]
    out.print(f"high band: valid loss {v['loss']:+.4f} (equal split {v['loss_equal_split']:+.4f}) in "
              f"{rec['training']['seconds']:.0f} s; run `rtsep export {model_dir}` to seal it")


SPACE_HELP = "Langevin chain: signal (waveforms + projection) or mask (STFT mask logits); default: the card's."


def parse_shard(shard: str) -> tuple[int, int]:
    """--shard I/N -> (I, N), or a one-line error."""
    try:
        index, count = (int(v) for v in shard.split("/"))
    except ValueError:
        fail(f"--shard {shard!r}: expected I/N, e.g. 0/2")
    if not 0 <= index < count:
        fail(f"--shard {shard!r}: I must be in 0..N-1")
    return index, count


def check_space(space: str | None) -> None:
    from .langevin import SPACES

    if space is not None and space not in SPACES:
        fail(f"unknown --space {space!r} ({' or '.join(SPACES)})")


def print_separation(res: dict) -> None:
    from rich.table import Table

    t = Table(title=f"SI-SDR / SI-SDRi in dB, median (mean), {res['clips']} held-out mixtures of {res['seconds']:.1f} s",
              title_justify="left")
    t.add_column("estimate")
    for s in res["sources"]:
        t.add_column(s, justify="right")
    for key, row in res["table"].items():
        t.add_row(key, *[f"{row[s]['si_sdr_median']:.1f} / {row[s]['si_sdri_median']:+.1f} ({row[s]['si_sdri_mean']:+.1f})"
                         for s in res["sources"]])
    out.print(t)


@eval_app.command("separate")
@one_line_errors
def eval_separate_cmd(
    model: str = typer.Argument(..., help="Model name or directory."),
    data: Path = typer.Option(..., help="Held-out data DATA/test/<source>/*.wav or DATA/<source>/*.wav"),
    steps: Optional[int] = typer.Option(None, min=0, help="Langevin steps after the encoder (default: the card's, as `rtsep file`)."),
    space: Optional[str] = typer.Option(None, help=SPACE_HELP),
    temperature: Optional[float] = typer.Option(None, min=0.0, help="Langevin noise temperature (default: the card's)."),
    sigma_start: Optional[float] = typer.Option(None, min=1e-6, help="First annealing level (default: the card's)."),
    sigma_end: Optional[float] = typer.Option(None, min=1e-6, help="Last annealing level (default: the card's)."),
    mask_lr: Optional[float] = typer.Option(None, min=0.0, help="Mask-space step size (default: the card's)."),
    warm_start: Optional[float] = typer.Option(None, min=0.0, max=1.0,
                                               help="Share of the encoder's estimate the chain starts from (0: an equal split, BASIS's cold start; default: the card's)."),
    relabel_every: Optional[int] = typer.Option(None, min=0,
                                                help="Mask space: every K steps give each prior the estimate it rates highest (0: never; default: the card's)."),
    polish: Optional[int] = typer.Option(None, min=0,
                                         help="Mask space: the last K steps without noise (default: the card's)."),
    chains: Optional[int] = typer.Option(None, min=1,
                                         help="Mask space: independent chains per block, keeping the one the priors rate highest (default: the card's)."),
    rate_sigma: Optional[float] = typer.Option(None, min=0.0,
                                               help="Noise level at which --chains and --swaps are rated (0: the last sigma; default: the card's)."),
    swaps: Optional[int] = typer.Option(None, min=0,
                                        help="Mask space: rounds of swap-and-relax moves after the chain (default: the card's)."),
    swap_steps: Optional[int] = typer.Option(None, min=1,
                                             help="Noise-free steps relaxing each --swaps proposal (default: the card's)."),
    swap_sigma: Optional[float] = typer.Option(None, min=1e-6,
                                               help="First noise level of that relaxation (default: the card's)."),
    bands: Optional[int] = typer.Option(None, min=0,
                                        help="Mask space: sweeps of per-partial reassignment after the swaps (default: the card's)."),
    band_weight: Optional[float] = typer.Option(None, min=0.0,
                                                help="Mask space: weight per sample of the encoder's band-shape prior in the chain (default: the card's)."),
    split: str = typer.Option("test"),
    clips: int = typer.Option(40, min=1),
    seconds: Optional[float] = typer.Option(None, help="Crop each mixture to this length."),
    whole: bool = typer.Option(False, "--whole", help="Separate each clip as one block (no streaming context), not in the file geometry."),
    shard: str = typer.Option("0/1", help="I/N: only clips i with i % N == I (run N at once, then `eval merge`)."),
    backend: str = typer.Option("torch", help="torch or onnx."),
    seed: int = typer.Option(0),
    label: Optional[str] = typer.Option(None, help="Store the result in the card under this key."),
    json_out: Optional[Path] = typer.Option(None, "--json"),
) -> None:
    """SI-SDR(i) per source: mixture baseline, encoder alone, encoder + K Langevin steps."""
    from .separation_eval import evaluate_separation, store
    from .separator import resolve_model
    from .progress import bar

    check_space(space)
    with bar(transient=True) as progress:
        task = progress.add_task("separate", total=None, info="")
        res = evaluate_separation(model, data, steps=steps, split=split, clips=clips, seconds=seconds,
                                  backend=backend, seed=seed, progress=progress_cb(progress, task), whole=whole,
                                  shard=parse_shard(shard),
                                  langevin={k: v for k, v in (("space", space), ("temperature", temperature),
                                                              ("sigma_start", sigma_start), ("sigma_end", sigma_end),
                                                              ("mask_lr", mask_lr), ("warm_start", warm_start),
                                                              ("relabel_every", relabel_every), ("polish", polish),
                                                              ("chains", chains), ("rate_sigma", rate_sigma),
                                                              ("swaps", swaps), ("swap_steps", swap_steps),
                                                              ("swap_sigma", swap_sigma), ("bands", bands),
                                                              ("band_weight", band_weight))
                                            if v is not None})
    print_separation(res)
    if label:
        store(resolve_model(model), label, res)
    if json_out:
        write_json(json_out, res)


@eval_app.command("merge")
@one_line_errors
def eval_merge_cmd(
    parts: list[Path] = typer.Argument(..., help="`eval separate --shard I/N --json` results of one evaluation."),
    label: Optional[str] = typer.Option(None, help="Store the merged result in the model's card under this key."),
    json_out: Optional[Path] = typer.Option(None, "--json"),
) -> None:
    """Join the shards of one `eval separate` into one table."""
    import json

    from .separation_eval import merge, store
    from .separator import resolve_model

    try:
        results = [json.loads(p.read_text()) for p in parts]
    except (OSError, ValueError) as exc:
        fail(f"cannot read a result to merge: {exc}")
    if not all("per_clip" in r and "clip_index" in r for r in results):
        fail("a result to merge has no per-clip rows (written before they existed?)")
    res = merge(results)
    print_separation(res)
    if label:
        store(resolve_model(res["model"]), label, res)
    if json_out:
        write_json(json_out, res)


def track_names(inputs: list[Path]) -> list[str]:
    """One output folder name per input: its file name without extension, or ``<folder>_<name>``
    (more folders, then the extension, then a number, as needed) where two inputs would share one,
    so a run never writes over its own output. Compared case-insensitively (macOS, Windows)."""
    full = [p.resolve() for p in inputs]
    names = [p.stem for p in full]
    depth = [0] * len(full)

    def clashes() -> set[int]:
        seen: dict[str, list[int]] = {}
        for i, n in enumerate(names):
            seen.setdefault(n.casefold(), []).append(i)
        return {i for group in seen.values() if len(group) > 1 for i in group}

    for _ in range(64):
        todo = clashes()
        if not todo:
            return names
        grown = False
        for i in todo:
            parents = full[i].parent.parts[1:]  # without the root
            if depth[i] < len(parents):
                depth[i] += 1
                names[i] = "_".join([*parents[len(parents) - depth[i]:], full[i].stem])
                grown = True
            elif not names[i].endswith(f"_{full[i].suffix.lstrip('.')}") and full[i].suffix:
                names[i] = f"{names[i]}_{full[i].suffix.lstrip('.')}"
                grown = True
        if not grown:
            break
    taken: set[str] = set()
    for i, n in enumerate(names):  # identical paths are removed before; this is the last resort
        k, name = 2, n
        while name.casefold() in taken:
            name, k = f"{n}_{k}", k + 1
        names[i] = name
        taken.add(name.casefold())
    return names


@app.command("file")
@one_line_errors
def file_cmd(
    inputs: list[Path] = typer.Argument(..., help="Audio files (any format soundfile reads)."),
    out_dir: Path = typer.Option(Path("separated"), "-o", "--out", help="Writes OUT/<track>/<source>.<ext>; <track> "
                                 "is the file's name without extension, <folder>_<name> when two inputs share one."),
    model: str = typer.Option("music4", help="Shipped model name or model directory."),
    steps: Optional[int] = typer.Option(None, min=0, help="Langevin steps per block (default: the model card's)."),
    space: Optional[str] = typer.Option(None, help=SPACE_HELP),
    samples: int = typer.Option(1, min=1, max=64, help="Posterior samples; > 1 also writes <source>.spread.<ext> "
                                "(needs Langevin steps with noise: without them every sample is the same)."),
    temperature: Optional[float] = typer.Option(None, min=0.0, help="Langevin noise temperature (default: the card's; "
                                                "music4's learned chain runs at 0, deterministic)."),
    fmt: str = typer.Option("wav", "--format", help="wav (32-bit float) or flac (24-bit; a track whose stems "
                            "exceed full scale is scaled by one stated gain instead of clipped)."),
    seed: int = typer.Option(0, help="Seed of the Langevin noise: the same seed gives the same stems."),
    backend: str = typer.Option("auto", help="auto (ONNX Runtime where the model has graphs), onnx or torch."),
    provider: str = typer.Option("auto", help="ONNX Runtime provider: auto, cpu or cuda."),
    overwrite: bool = typer.Option(False, help="Replace stems that already exist."),
) -> None:
    """Separate files into stems; the stems sum back to the input.

    Each track's stems appear together or not at all: they are computed in a hidden folder in OUT and
    moved into place at the end (Ctrl-C or SIGTERM leaves nothing; a killed run's leftovers are
    removed by the next run). Truncated input (a header promising more than the file holds) is
    refused, not separated."""
    import math

    from .audio import SUPPORTED_OUTPUT, clean_stale_parts, publish, staging_dir
    from .separator import Separator
    from .progress import bar

    if fmt not in SUPPORTED_OUTPUT:
        fail(f"unsupported output format {fmt!r} (choose from {', '.join(SUPPORTED_OUTPUT)})")
    check_space(space)
    sep = Separator.load(model, backend=backend, steps=steps, samples=samples, seed=seed, provider=provider,
                         space=space, temperature=temperature)
    if samples > 1 and sep.run.steps == 0:
        fail(f"--samples {samples} needs Langevin steps, and this run has none (the model's card sets 0, or --steps "
             "0): every sample would be the encoder's mean and the spread files all zero; use --steps K > 0 or "
             "--samples 1")
    if samples > 1 and sep.run.langevin.space == "mask" and sep.run.langevin.temperature == 0:
        fail(f"--samples {samples} needs chain noise, and this chain runs at temperature 0 (deterministic): every "
             "sample would be the same and the spread files all zero; add --temperature T > 0 or use --samples 1")
    unique: dict[Path, Path] = {}
    for path in inputs:
        if path.resolve() in unique:
            console.print(f"note: {path} given twice: separated once", highlight=False, soft_wrap=True)
        unique.setdefault(path.resolve(), path)
    inputs = list(unique.values())
    clean_stale_parts(out_dir)
    failed = 0
    with bar() as progress:
        for path, name in zip(inputs, track_names(inputs)):
            track = out_dir / name
            clean_stale_parts(track)
            outputs = [*sep.sources, *(f"{s}.spread" for s in sep.sources if samples > 1)]
            existing = [track / f"{s}.{fmt}" for s in outputs if (track / f"{s}.{fmt}").exists()]
            if existing and not overwrite:
                console.print(f"[red]error:[/red] {path}: {existing[0]} exists (use --overwrite)", highlight=False)
                failed += 1
                continue
            task = progress.add_task(path.name, total=None, info="")
            try:
                with staging_dir(out_dir, name) as stage:
                    try:
                        written = sep.separate_file(path, stage, fmt="wav", progress=progress_cb(progress, task))
                    except RtsepError as exc:  # name the output the user asked for, not the hidden folder
                        raise type(exc)(str(exc).replace(str(stage / path.stem), str(track))) from exc
                    gain = publish(written, track, fmt)
            except RtsepError as exc:
                progress.remove_task(task)
                console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
                failed += 1
                continue
            progress.update(task, info=f"-> {track}")
            if gain < 1.0:
                console.print(f"note: {track}: stems scaled by {gain:.6f} ({20 * math.log10(gain):+.2f} dB) so FLAC "
                              "does not clip them (stated in each file's comment tag); divide by it to sum to the "
                              "input, or use --format wav (float)", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(2)


@app.command("adapt")
@one_line_errors
def adapt_cmd(
    model: str = typer.Argument(..., help="The model to adapt: an installed name (music4) or a directory."),
    sources: Path = typer.Option(..., "--sources", help="Your solo recordings: SOURCES/<source>/*.wav (any rate, "
                                 "channels, length); a source without a folder keeps its prior."),
    out_dir: Path = typer.Option(..., "-o", "--out", help="The adapted model directory to write (or resume)."),
    mixtures: Optional[Path] = typer.Option(None, help="Optional folder of your real mixtures (no stems needed)."),
    minutes: float = typer.Option(25.0, min=1.0, help="Time budget for the whole run, export included."),
    objective: str = typer.Option("solo-mix", help="solo-mix: SI-SDR against the solo excerpts mixed (measured "
                                  "better); seed: the adapted priors' log-density of each estimate (the seed objective)."),
    anchor: float = typer.Option(1.0, min=0.0, help="Weight of the pull back to the base model's estimates."),
    blend: float = typer.Option(0.75, min=0.0, max=1.0, help="Share of the fine-tuned encoder weights kept (the rest "
                                "the base's): less forgetting of what the base model knew."),
    seed: int = typer.Option(0),
    threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default: all cores)."),
) -> None:
    """Fit a model to your own instruments from solo recordings: priors first, then the encoder on stem-free
    mixtures; writes a complete model directory that `rtsep file` and `rtsep live` load."""
    set_threads(threads)
    from .train.adapt import AdaptConfig, adapt

    rec = adapt(model, sources, out_dir, AdaptConfig(minutes=minutes, objective=objective, anchor=anchor, blend=blend,
                                                     seed=seed),
                mixtures=mixtures)
    out.print(f"adapted {', '.join(rec['adapted_sources'])} in {rec['minutes_with_export']:.1f} min "
              f"({rec['encoder']['steps_done']} encoder steps, objective {rec['objective']}); "
              f"separate with: rtsep file --model {out_dir} IN.wav")


@app.command("models")
@one_line_errors
def models_cmd() -> None:
    """List installed models (RTSEP_MODELS, else the shipped ones) with their sources and rate."""
    from .bundle import ENV, installed_models, models_dir
    from .card import read_card

    root = models_dir()
    found = installed_models()
    if not found:
        where = f"{root}" if root is not None else "the rtsep package or checkout"
        fail(f"no models installed in {where}" + ("" if root is not None and root.is_dir() else " (no such folder)")
             + f"; set {ENV} to a folder of model directories", 3)
    for d in found:
        try:
            card = read_card(d)
        except RtsepError as exc:  # one broken card must not hide the others
            out.print(f"{d.name}: cannot read its card ({exc})", highlight=False, soft_wrap=True)
            continue
        out.print(f"{d.name}: sources {', '.join(card.get('priors', {}))} at {card.get('sample_rate')} Hz"
                  f"{'' if 'encoder' in card else ' (priors only)'}", highlight=False)


@app.command("export")
@one_line_errors
def export_cmd(
    model_dir: Path = typer.Argument(..., help="Model directory (card.json + weights)."),
    out_dir: Optional[Path] = typer.Option(None, "-o", "--out", help="Output folder (default MODEL_DIR/onnx)."),
    window: int = typer.Option(16384, "--block", "--window", help="Samples the graphs are traced and checked at."),
    scores: bool = typer.Option(False, help="Also write each prior's raw score graph score_<source>.onnx."),
) -> None:
    """Export the encoder and the fused Langevin step (every prior's score) to ONNX, parity-checked against torch."""
    from .export import export_bundle

    man = export_bundle(model_dir, out_dir, window=window, scores=scores)
    for name, g in man["graphs"].items():
        errs = g.get("max_abs_error", {})
        worst = max(errs.values()) if isinstance(errs, dict) and errs else errs
        out.print(f"{name}: max abs error vs torch {worst}")


@app.command("bench")
@one_line_errors
def bench_cmd(
    model: str = typer.Option("music4", help="Installed model name or model directory."),
    provider: str = typer.Option("cpu", help="ONNX Runtime provider: cpu, cuda or auto."),
    streams: int = typer.Option(1, min=1, help="Simultaneous streams served by one loaded model."),
    steps: str = typer.Option("0,2,4", help="Langevin step counts to measure."),
    engines: str = typer.Option("torch,onnx", help="Backends to compare."),
    seconds: float = typer.Option(4.0, min=0.5, help="Audio per stream and setting."),
    threads: Optional[int] = typer.Option(None, min=1, help="CPU threads per backend."),
    space: Optional[str] = typer.Option(None, help=SPACE_HELP),
    json_out: Optional[Path] = typer.Option(None, "--json"),
) -> None:
    """Real-time factor and block latency (p50/p99/max) with the live geometry, torch vs ONNX Runtime."""
    from rich.table import Table

    from .bench import LIVE_GEOMETRY, bench_engine, live_geometry
    from .card import read_card
    from .langevin import LangevinConfig
    from .separator import resolve_model

    check_space(space)
    model_dir = resolve_model(model)
    lcfg = LangevinConfig.from_card(read_card(model_dir), model_dir, **({"space": space} if space else {}))
    records = []
    table = Table(title=f"rtsep bench: {model_dir.name}, hop {LIVE_GEOMETRY.hop}, {streams} stream(s), "
                        f"{lcfg.space}-space Langevin", title_justify="left")
    for col in ("engine", "provider", "steps", "RTF", "p50 ms", "p99 ms", "max ms", "latency ms"):
        table.add_column(col, justify="right")
    for engine in engines.split(","):
        if engine == "torch":
            from .backends import TorchBackend

            be, prov = TorchBackend(model_dir, threads=threads), "cpu"
        elif engine == "onnx":
            from .onnx_backend import OnnxBackend

            be = OnnxBackend(model_dir, provider=provider, threads=threads)
            prov = "cuda" if "CUDA" in be.provider else "cpu"
        else:
            fail(f"unknown engine {engine!r} (torch or onnx)")
        g = LIVE_GEOMETRY
        geometry = live_geometry(g.hop, g.context, g.lookahead, g.crossfade, be.stride)
        for k in (int(s) for s in steps.split(",")):
            r = {"engine": engine, "provider": prov, "space": lcfg.space,
                 **bench_engine(be, lcfg, geometry, k, streams, seconds)}
            records.append(r)
            table.add_row(engine, prov, str(k), f"{r['rtf']:.3f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                          f"{r['max_ms']:.1f}", f"{r['latency_ms']:.0f}")
    out.print(table)
    if json_out:
        write_json(json_out, records)


# --- live audio: `rtsep devices`, `rtsep live` (rtsep/live/) -----------------------------------

@app.command("devices")
@one_line_errors
def devices_cmd() -> None:
    """List audio devices: index, name, host API, channels, native rate (> default in, < default out)."""
    from rich.table import Table

    from .live import list_devices

    devs = list_devices()
    if not devs:
        fail("PortAudio sees no audio devices", 5)
    t = Table(title="audio devices (> default input, < default output)", title_justify="left")
    for col, just in (("", "left"), ("index", "right"), ("name", "left"), ("host API", "left"), ("in", "right"),
                      ("out", "right"), ("native rate", "right")):
        t.add_column(col, justify=just)
    for d in devs:
        mark = (">" if d["default_input"] else " ") + ("<" if d["default_output"] else " ")
        t.add_row(mark, str(d["index"]), d["name"], d["hostapi"], str(d["inputs"]), str(d["outputs"]),
                  f"{d['default_samplerate']:g}")
    out.print(t)


def _live_panel(stats, title: str):
    import math

    from rich.panel import Panel
    from rich.table import Table

    def meter(db: float, width: int = 30) -> str:
        frac = 0.0 if not math.isfinite(db) else min(1.0, max(0.0, (db + 60.0) / 60.0))
        n = int(round(frac * width))
        return "[green]" + "#" * n + "[/green]" + "." * (width - n)

    def db_text(db: float) -> str:
        return "  -inf dB" if not math.isfinite(db) else f"{db:6.1f} dB"

    t = Table.grid(padding=(0, 2))
    t.add_column(justify="left")
    t.add_column(justify="left")
    t.add_column(justify="right")
    t.add_row("input", meter(stats.input_db), db_text(stats.input_db))
    for s, db in zip(stats.sources, stats.levels_db):
        t.add_row(s, meter(db), db_text(db))
    bad = stats.overflows + stats.underflows + stats.late_blocks
    colour = "red" if bad else "green"
    t.add_row("", "", "")
    if stats.route is not None:
        t.add_row("route", stats.route.describe(), "")
    t.add_row("time", f"{stats.seconds:.1f} s, {stats.blocks} blocks", "")
    t.add_row("latency", f"{stats.latency} samples = {stats.latency_ms:.1f} ms "
              f"(+ device {1000 * sum(stats.device_latency_s):.1f} ms)", "")
    t.add_row("load", f"{stats.load:.2f} x real time per block", "")
    t.add_row("xruns", f"[{colour}]overflows {stats.overflows}  underflows {stats.underflows}  "
              f"late blocks {stats.late_blocks}[/{colour}]", "")
    return Panel(t, title=title, subtitle="Ctrl-C stops", expand=False)


@app.command("live")
@one_line_errors
def live_cmd(
    device: Optional[str] = typer.Option(None, help="Input device: index or name substring (default: system's)."),
    output_device: Optional[str] = typer.Option(None, help="Output device (default: the input device, else system's)."),
    channels: int = typer.Option(1, "--channels", min=1, help="Which input channel to separate (1-based, mono)."),
    output_channel: int = typer.Option(1, min=1, help="Device output channel that carries route channel 1 (L)."),
    route: Optional[str] = typer.Option(None, help="Sources to output channels, SOURCE=TARGETS[,...]: targets L, R, "
                                        "C, a channel number from 1, joined by +, each with an optional :GAIN "
                                        "(0.5 or -6dB), or mute; * names the other sources. E.g. 'drums=L,*=R', "
                                        "'guitar=mute', 'bass=L:0.7+R:0.3'. Default: one source per channel when "
                                        "the device has enough, else a stereo pan (first source L, last R)."),
    solo: Optional[list[str]] = typer.Option(None, help="Play only this source (repeat for several)."),
    rate: Optional[int] = typer.Option(None, min=8000, max=384000, help="Device sample rate in Hz (default: the "
                                       "input device's native rate); audio is resampled to the model's rate and back."),
    record: Optional[Path] = typer.Option(None, help="Also write DIR/<source>.wav at the device rate (finalised "
                                          "on stop)."),
    overwrite: bool = typer.Option(False, help="Replace recordings that already exist."),
    model: str = typer.Option("music4", help="Installed model name or model directory."),
    hop: int = typer.Option(512, min=16, help="Block hop in model samples (latency = hop + lookahead + resampling "
                            "+ one callback block)."),
    context: int = typer.Option(2048, min=0, help="Left context per block in model samples."),
    lookahead: int = typer.Option(512, min=0, help="Lookahead per block in model samples."),
    crossfade: int = typer.Option(256, min=0, help="Crossfade between blocks in model samples (<= hop, lookahead)."),
    steps: Optional[int] = typer.Option(None, min=0, help="Langevin steps per block (default: the model card's)."),
    seconds: Optional[float] = typer.Option(None, min=0.1, help="Stop after this many seconds (default: Ctrl-C)."),
    backend: str = typer.Option("auto", help="auto (ONNX Runtime where the model has graphs, else torch), onnx or "
                                "torch."),
    provider: str = typer.Option("auto", help="ONNX Runtime provider: auto, cpu or cuda."),
    threads: Optional[int] = typer.Option(None, min=1, help="Compute threads (default: the runtime's)."),
    blocksize: int = typer.Option(0, min=0, help="Frames per audio callback; 0 lets the host choose (lowest latency)."),
    margin: float = typer.Option(0.0, min=0.0, max=10000.0, help="Extra output delay in ms: compute time a block "
                                 "may take beyond one callback period (latency grows by as much)."),
    device_latency: str = typer.Option("low", help="PortAudio's suggested latency: low, high or seconds."),
    seed: int = typer.Option(0, help="Seed of the Langevin noise."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write the final counters and latency as JSON."),
) -> None:
    """Separate a live input onto routed output channels, with level meters and xrun counters.

    Ends on Ctrl-C, SIGTERM or --seconds. Exit 7 when the run could not keep up (after the first
    second, more than 1% of blocks late or of output callbacks starved, or input lost), 5 when the
    device fails or vanishes.
    """
    import os
    import signal
    import threading
    import time

    from rich.live import Live

    from .bench import live_geometry
    from .card import read_card
    from .errors import DeviceError
    from .live import LiveSession, find_device, parse_route
    from .separator import Separator, resolve_model

    if backend not in ("auto", "torch", "onnx"):
        fail(f"unknown backend {backend!r} (auto, onnx or torch)")
    try:
        dev_latency: str | float = float(device_latency)
    except ValueError:
        if device_latency not in ("low", "high"):
            fail(f"--device-latency must be low, high or seconds, not {device_latency!r}")
        dev_latency = device_latency
    # Devices and the route first: a typo in either should not cost a model load.
    in_dev = find_device(device, "input", channels)
    if output_device is not None:
        find_device(output_device, "output", 1)
    model_dir = resolve_model(model)
    enc_cfg = read_card(model_dir).get("encoder", {}).get("config", {})
    sources = tuple(enc_cfg.get("sources", ()))
    if sources:
        parse_route(route, sources, len(sources), tuple(solo or ()))
    stride = int(enc_cfg.get("stride", 16))
    if record is not None and not overwrite:
        for s in sources:
            if (record / f"{s}.wav").exists():
                fail(f"{record / f'{s}.wav'} exists (use --overwrite)", 2)
    for name, value in (("hop", hop), ("context", context), ("lookahead", lookahead)):
        if value % stride:
            fail(f"--{name} must be a multiple of the model's stride ({stride} samples), not {value}")
    if crossfade > min(hop, lookahead):
        fail(f"--crossfade must be at most min(--hop, --lookahead) = {min(hop, lookahead)}")
    geometry = live_geometry(hop, context, lookahead, crossfade, stride)
    sep = Separator.load(model_dir, backend=backend, steps=steps, seed=seed, geometry=geometry, provider=provider,
                         threads=threads)
    session = LiveSession(sep, input_device=in_dev["index"], output_device=output_device, channel=channels,
                          output_channel=output_channel, route=route, solo=tuple(solo or ()), sample_rate=rate,
                          record_dir=record, blocksize=blocksize, device_latency=dev_latency, overwrite=overwrite,
                          margin_ms=margin)
    title = (f"rtsep live: {in_dev['name']} ch {channels} -> {session.out_dev['name']} @ {session.sample_rate} Hz"
             + (f" (model {sep.sample_rate} Hz)" if session.sample_rate != sep.sample_rate else ""))
    error: Optional[BaseException] = None
    shown = False
    # Ctrl-C (or SIGTERM) is how a live session normally ends. It only sets a flag that the loop
    # below checks: a KeyboardInterrupt raised at an arbitrary point (inside rich's display lock,
    # a queue, PortAudio) can leave the process hanging on its way out. A second Ctrl-C forces it.
    stop_requested = threading.Event()

    def request_stop(signum, frame) -> None:
        if stop_requested.is_set():
            raise KeyboardInterrupt
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        session.start()
        with Live(_live_panel(session.stats(), title), console=console, refresh_per_second=4) as live:
            shown = True
            t_end = None if seconds is None else time.monotonic() + seconds
            while not stop_requested.is_set() and (t_end is None or time.monotonic() < t_end):
                session.poll()
                live.update(_live_panel(session.stats(), title))
                stop_requested.wait(0.25 if t_end is None else max(0.0, min(0.25, t_end - time.monotonic())))
            session.poll()
    except KeyboardInterrupt:
        pass  # a second Ctrl-C: stop now
    except BaseException as exc:
        error = exc
    finally:
        if shown and not console.is_terminal:
            console.line()  # rich ends a live display with a newline on terminals only
        session.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    st = session.stats()
    if json_out is not None:
        write_json(json_out, st.to_dict())
    if error is None:
        try:
            session.poll()  # a failure while draining (e.g. a recording that could not be written)
        except BaseException as exc:
            error = exc
    if error is None:
        out.print(f"live: {st.seconds:.1f} s, {st.blocks} blocks at {st.sample_rate} Hz, latency {st.latency} "
                  f"samples ({st.latency_ms:.1f} ms: algorithmic {st.algorithmic_latency} at "
                  f"{st.model_sample_rate} Hz, resampling and alignment {st.resampler_latency}, callback "
                  f"{st.block_frames}" + (f", margin {st.margin}" if st.margin else "") + "), "
                  f"overflows {st.overflows}, underflows {st.underflows}, late blocks {st.late_blocks}"
                  + (f", recorded to {record}" if record else ""), soft_wrap=True)
        if not st.kept_up:
            hints = []
            if "onnx" not in type(sep.backend).__module__:
                hints.append("--backend onnx (faster)")
            if sep.run.steps:
                hints.append(f"a smaller --steps (now {sep.run.steps})")
            hints.append(f"a larger --margin (now {margin:g} ms)")
            fail(f"could not keep up: {st.health()}; try " + " or ".join(hints), 7)
    elif session.stream_abandoned and isinstance(error, DeviceError):
        console.print(f"[red]error:[/red] {error}", highlight=False, soft_wrap=True)
    else:
        raise error
    if session.stream_abandoned:
        # PortAudio's exit handler can hang or abort on a stream whose server died (seen with JACK):
        # the recordings are finalised by now, so leave without running it.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(error.exit_code if isinstance(error, DeviceError) else 0)
