"""music4: a small Slakh-like set of random General MIDI songs rendered per stem with FluidSynth.

Each clip is a short random song (key, tempo, meter, chord progression) played by piano, guitar,
bass and drums; every stem is written to its own MIDI file and rendered dry (no reverb or chorus)
so the stems sum to an honest mixture. Only the MIDI and the augmentation are random (numpy, seeded
per split), and FluidSynth renders a given MIDI file identically, so a seed fully determines the set.

Generator "v2" (the default) draws each stem's instruments from several GM banks and varies far more
(tempo 60-180 bpm, 3/4 and 6/8 meters, swing, velocity curves, registers, articulation, per-stem EQ
tilt, room and saturation): a model trained on one bank playing one song generator learns that bank,
not the instrument (the shipped v1 encoder lost up to 1.4 dB on an unseen bank). "v1" reproduces the
sets of sessions 1-19 exactly (FluidR3 only, 4/4, 80-160 bpm, no augmentation).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import mido
import numpy as np
import soundfile as sf

from rtsep.atomic import write_text
from rtsep.datasets.common import split_counts, split_seed, write_manifest, write_wav_atomic
from rtsep.errors import DataError

SOURCES = ("bass", "drums", "guitar", "piano")
# Never add MuseScore General (evaluation only) or TimGM6mb (the adaptation tests' "user's own
# instruments") here.
TRAIN_SOUNDFONTS = ("/usr/share/sounds/sf2/FluidR3_GM.sf2",)
TRAIN_BANKS = {  # generator v2: every installed one of these; FluidR3_GM is required
    "/usr/share/sounds/sf2/FluidR3_GM.sf2": "fluid-soundfont-gm",
    "/usr/share/sounds/sf3/FluidR3Mono_GM.sf3": "fluidr3mono-gm-soundfont",
    "/usr/share/sounds/sf2/sf_GMbank.sf2": "csound-soundfont",
    "/usr/share/sounds/sf2/OPL-3_FM_128M.sf2": "opl3-soundfont",
}
RESERVED = ("musescore", "timgm6mb")  # never in a training set: evaluation / adaptation stand-ins
GENERATORS = ("v1", "v2")
METERS = ("4/4", "3/4", "6/8")
INSTALL_HINT = "apt-get install fluidsynth fluid-soundfont-gm"
HELDOUT_SOUNDFONT = "/usr/share/sounds/sf3/MuseScore_General.sf3"
HELDOUT_HINT = "apt-get install fluidsynth musescore-general-soundfont"

TICKS = 480  # MIDI ticks per beat
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
PROGRESSIONS = {  # scale degrees, 0-based
    False: ((0, 4, 5, 3), (0, 3, 4, 3), (5, 3, 0, 4), (1, 4, 0, 0), (0, 5, 3, 4), (0, 3, 0, 4)),
    True: ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2), (0, 5, 3, 4)),
}
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)  # GM2/GS kits FluidR3_GM provides on the percussion bank
KICK, SNARE, HAT, OPEN_HAT, RIDE, CRASH = 36, 38, 42, 46, 51, 49
TOMS = (50, 48, 47, 45, 43, 41)  # high to low

Note = tuple[float, float, int, int]  # start beat, length in beats, pitch, velocity
Chord = tuple[float, float, int, list[int]]  # start beat, length, root pitch class, chord pitch classes


def _vel(rng: np.random.Generator, base: float, spread: float = 8.0) -> int:
    return int(np.clip(round(base + rng.normal(0.0, spread)), 1, 127))


def _near(pc: int, center: int) -> int:
    """The pitch with pitch class pc closest to center (a closed voicing around center)."""
    return center + ((pc - center + 6) % 12) - 6


def _chords(rng: np.random.Generator, beats: float, bar: float = 4.0) -> list[Chord]:
    """A cycled chord progression in a random key, one or two chords per 4/4 bar (one per 3-beat bar)."""
    key, minor = int(rng.integers(12)), bool(rng.random() < 0.4)
    scale, prog = (MINOR if minor else MAJOR), PROGRESSIONS[minor]
    degrees = prog[int(rng.integers(len(prog)))]
    length = bar if rng.random() < 0.7 or bar != 4.0 else 2.0
    sevenths = bool(rng.random() < 0.3)
    out, t, i = [], 0.0, 0
    while t < beats:
        d = degrees[i % len(degrees)]
        tones = [key + scale[(d + k) % 7] for k in ((0, 2, 4, 6) if sevenths else (0, 2, 4))]
        out.append((t, length, tones[0] % 12, [p % 12 for p in tones]))
        t, i = t + length, i + 1
    return out


def _piano(rng: np.random.Generator, chords: list[Chord]) -> list[Note]:
    style, center, base = int(rng.integers(4)), int(rng.integers(60, 70)), float(rng.uniform(65, 95))
    comp = rng.random(8) < 0.4
    comp[0] = True
    notes: list[Note] = []
    for start, length, root, pcs in chords:
        voiced = sorted(_near(pc, center) for pc in pcs)
        if style == 0:  # sustained chord with a left-hand root
            notes += [(start, length, p, _vel(rng, base)) for p in voiced]
            notes.append((start, length, _near(root, center - 19), _vel(rng, base)))
        elif style == 1:  # block chords on every beat
            for b in np.arange(0.0, length, 1.0):
                v = _vel(rng, base + (8 if b == 0 else 0))
                notes += [(start + b, 0.9, p, v) for p in voiced]
        elif style == 2:  # eighth-note arpeggio up and down
            seq = voiced + [voiced[0] + 12] + voiced[:0:-1]
            for k, b in enumerate(np.arange(0.0, length, 0.5)):
                notes.append((start + b, 0.6, seq[k % len(seq)], _vel(rng, base)))
        else:  # syncopated comping on an eighth-note grid
            for k, b in enumerate(np.arange(0.0, length, 0.5)):
                if comp[k % 8] or b == 0:
                    v = _vel(rng, base)
                    notes += [(start + b, 0.45, p, v) for p in voiced]
    return notes


def _guitar(rng: np.random.Generator, chords: list[Chord], bpm: float) -> list[Note]:
    base = float(rng.uniform(65, 100))
    notes: list[Note] = []
    if rng.random() < 0.6:  # strummed chords with a per-song eighth-note pattern
        pattern = rng.random(8) < 0.5
        pattern[0] = True
        gap = float(rng.uniform(0.008, 0.025)) * bpm / 60.0  # seconds between strings, in beats
        for start, length, root, pcs in chords:
            voiced = sorted({_near(root, 45)} | {_near(pc, 60) for pc in pcs} | {_near(root, 64)})
            hits = [b for k, b in enumerate(np.arange(0.0, length, 0.5)) if pattern[k % 8] or b == 0]
            for j, b in enumerate(hits):
                end = hits[j + 1] if j + 1 < len(hits) else length
                up = (b % 1.0) != 0.0
                order = voiced[::-1] if up else voiced
                v = base - (12 if up else 0)
                for s, p in enumerate(order):
                    notes.append((start + b + s * gap, end - b - s * gap, p, _vel(rng, v)))
    else:  # single-note line: a random walk over chord and scale tones
        step = 0.5 if rng.random() < 0.6 else 1.0
        pitch = int(rng.integers(55, 70))
        for start, length, root, pcs in chords:
            for b in np.arange(0.0, length, step):
                if start + b > 0 and rng.random() < 0.15:
                    continue  # a rest, never on the first note of the clip
                target = pcs if b == 0 or rng.random() < 0.6 else [(pc + 2) % 12 for pc in pcs]
                cands = [_near(pc, pitch + int(rng.integers(-5, 6))) for pc in target]
                pitch = int(np.clip(cands[int(rng.integers(len(cands)))], 52, 79))
                notes.append((start + b, step * 0.9, pitch, _vel(rng, base)))
    return notes


def _bass(rng: np.random.Generator, chords: list[Chord]) -> list[Note]:
    style, base, center = int(rng.integers(4)), float(rng.uniform(80, 110)), int(rng.integers(36, 44))
    notes: list[Note] = []
    for start, length, root, _ in chords:
        r = _near(root, center)
        fifth = r + 7 if r + 7 <= 52 else r - 5
        if style == 0:  # roots on every beat
            seq = [(b, 0.9, r) for b in np.arange(0.0, length, 1.0)]
        elif style == 1:  # root and fifth in half notes / quarter notes
            seq = [(b, 0.95, r if k % 2 == 0 else fifth) for k, b in enumerate(np.arange(0.0, length, 1.0))]
        elif style == 2:  # driving eighths on the root
            seq = [(b, 0.45, r) for b in np.arange(0.0, length, 0.5)]
        else:  # octave pops
            seq = [(b, 0.4, r + 12 * (k % 2)) for k, b in enumerate(np.arange(0.0, length, 0.5))]
        notes += [(start + b, d, p, _vel(rng, base + (10 if b == 0 else 0))) for b, d, p in seq]
    return notes


def _drums(rng: np.random.Generator, beats: float, meter: str = "4/4") -> list[Note]:
    """A 16th-note groove (kick, snare, hats or ride) with tom fills and crashes after them; 3/4 and
    6/8 bars hold 12 sixteenths (a waltz backbeat on 2 and 3, or a 6/8 backbeat on 4)."""
    steps = 16 if meter == "4/4" else 12
    if meter == "4/4":
        kick = {0, 8} | {s for s in (3, 6, 10, 11, 14) if rng.random() < 0.3}
        half_time = rng.random() < 0.2
        snare = {8} if half_time else {4, 12}
        if half_time:
            kick -= {8}
    elif meter == "3/4":
        kick, snare = {0} | {s for s in (6, 10) if rng.random() < 0.3}, {4, 8}
    else:  # 6/8: two dotted-quarter pulses
        kick, snare = {0} | {s for s in (4, 10) if rng.random() < 0.3}, {6}
    hats = int(rng.integers(3))  # 0: closed-hat eighths, 1: closed-hat sixteenths, 2: ride eighths
    cymbal = RIDE if hats == 2 else HAT
    open_hat = hats != 2 and rng.random() < 0.3
    base = float(rng.uniform(85, 110))
    notes: list[Note] = [(0.0, 0.5, CRASH, _vel(rng, base + 10))]
    for bar in range(math.ceil(beats / (steps / 4))):
        t0 = bar * steps / 4
        fill = rng.random() < (0.6 if bar % 4 == 3 else 0.1)
        fill_from = steps - 4 * int(rng.integers(1, 3)) if fill else steps
        for s in range(fill_from):
            t = t0 + s / 4
            if s in kick:
                notes.append((t, 0.25, KICK, _vel(rng, base + 5)))
            if s in snare:
                notes.append((t, 0.25, SNARE, _vel(rng, base + 5)))
            elif s % 2 == 1 and rng.random() < 0.08:
                notes.append((t, 0.25, SNARE, _vel(rng, 45)))  # ghost note
            if hats == 1 or s % 2 == 0:
                top = OPEN_HAT if open_hat and s == steps - 2 else cymbal
                notes.append((t, 0.25, top, _vel(rng, base - (0 if s % 4 == 0 else 15))))
        for k, s in enumerate(range(fill_from, steps)):
            pos = k * len(TOMS) // (steps - fill_from)
            pitch = SNARE if rng.random() < 0.3 else TOMS[pos]
            notes.append((t0 + s / 4, 0.25, pitch, _vel(rng, base - 10 + 2 * k)))
        if fill:
            notes.append((t0 + steps / 4, 0.5, CRASH, _vel(rng, base + 10)))
    return notes


def _write_midi(path: Path, notes: list[Note], program: int, channel: int, bpm: float, beats: float) -> None:
    """One track; notes are cut at the clip end and at the next onset of the same pitch."""
    events: list[tuple[int, int, mido.Message]] = []
    notes = sorted((n for n in notes if n[0] < beats), key=lambda n: (n[0], n[2]))
    for i, (start, length, pitch, vel) in enumerate(notes):
        on = round(start * TICKS)
        end = min(start + length, beats)
        nxt = next((m[0] for m in notes[i + 1:] if m[2] == pitch and m[0] > start), None)
        if nxt is not None:
            end = min(end, nxt)
        off = max(on + 1, round(end * TICKS))
        events.append((on, 1, mido.Message("note_on", channel=channel, note=pitch, velocity=vel)))
        events.append((off, 0, mido.Message("note_off", channel=channel, note=pitch, velocity=0)))
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
    track.append(mido.Message("program_change", channel=channel, program=program, time=0))
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=TICKS))
    midi = mido.MidiFile(ticks_per_beat=TICKS)
    midi.tracks.append(track)
    midi.save(str(path))


def _vary(rng: np.random.Generator, notes: list[Note], swing: float, register: int) -> list[Note]:
    """Generator v2's per-stem variety: a velocity curve, an articulation (note lengths), a register
    shift in octaves, and swing (off-beat eighths delayed by `swing` beats)."""
    gamma, scale = float(rng.uniform(0.6, 1.5)), float(rng.uniform(0.6, 1.25))
    out: list[Note] = []
    for start, length, pitch, vel in notes:
        if swing and abs((start * 2) % 2 - 1) < 1e-9:
            start += swing
        v = int(np.clip(round(127 * (vel / 127) ** gamma), 1, 127))
        out.append((start, max(0.05, length * scale), int(np.clip(pitch + 12 * register, 21, 108)), v))
    return out


def _song(rng: np.random.Generator, seconds: float, generator: str = "v1", meters: tuple[str, ...] = ("4/4",)
          ) -> tuple[dict[str, tuple[list[Note], int, int]], float, float, dict]:
    """Random notes, GM program and MIDI channel per stem, tempo, length in beats and the song's style."""
    if generator == "v1":
        bpm, meter, swing = float(rng.integers(80, 161)), "4/4", 0.0
    else:
        bpm = float(rng.integers(60, 181))
        meter = meters[int(rng.integers(len(meters)))]
        swing = float(rng.uniform(0.05, 0.17)) if meter == "4/4" and rng.random() < 0.3 else 0.0
    bar = 4.0 if meter == "4/4" else 3.0
    beats = seconds * bpm / 60.0
    chords = _chords(rng, beats, bar)
    parts = {
        "bass": (_bass(rng, chords), int(rng.integers(32, 40)), 0),
        "drums": (_drums(rng, beats, meter), int(DRUM_KITS[int(rng.integers(len(DRUM_KITS)))]), 9),
        "guitar": (_guitar(rng, chords, bpm), int(rng.integers(24, 32)), 0),
        "piano": (_piano(rng, chords), int(rng.integers(0, 8)), 0),
    }
    if generator != "v1":
        registers = {"bass": (-1, 0, 0, 0), "drums": (0,), "guitar": (-1, 0, 0, 1), "piano": (-1, 0, 0, 1)}
        for src, (notes, program, channel) in parts.items():
            reg = registers[src][int(rng.integers(len(registers[src])))]
            parts[src] = (_vary(rng, notes, swing, reg), program, channel)
    return parts, bpm, beats, {"bpm": bpm, "meter": meter, "swing": round(swing, 3)}


def _augment(rng: np.random.Generator, source: str) -> dict:
    """Per-stem augmentation drawn in the main thread (so a seed fixes it): EQ tilt in dB per octave
    around 1 kHz, and sometimes a small room or a little saturation."""
    aug = {"tilt": float(rng.uniform(-3.0, 3.0))}
    if rng.random() < 0.3:
        aug["room"] = (float(rng.uniform(0.15, 0.6)), float(rng.uniform(0.05, 0.25)), int(rng.integers(2**31)))
    if source in ("bass", "guitar") and rng.random() < 0.2:
        aug["drive"] = float(rng.uniform(1.5, 4.0))
    return aug


def apply_augment(audio: np.ndarray, sample_rate: int, aug: dict) -> np.ndarray:
    """Apply `_augment`'s draw to a mono render (same length out)."""
    n = audio.size
    if "drive" in aug and np.abs(audio).max() > 0:
        peak = float(np.abs(audio).max())
        audio = np.tanh(aug["drive"] * audio / peak) / np.tanh(aug["drive"]) * peak
    if "room" in aug:
        rt60, wet, seed = aug["room"]
        t = np.arange(int(rt60 * sample_rate)) / sample_rate
        ir = np.random.default_rng(seed).standard_normal(t.size) * np.exp(-6.9 * t / rt60)
        ir *= wet / np.sqrt((ir**2).sum())
        ir[0] += 1.0
        size = 1 << int(np.ceil(np.log2(n + ir.size)))
        audio = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(ir, size), size)[:n]
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    gain = 10 ** (aug["tilt"] * np.log2(np.maximum(f, 50.0) / 1000.0) / 20)
    return np.fft.irfft(np.fft.rfft(audio) * gain, n).astype(np.float32)


def _check_soundfont(path: Path, heldout: bool, hint: str) -> Path:
    """PATH when it is a readable SoundFont that this kind of set may use, else a one-line DataError."""
    name = path.resolve().name.lower() if path.exists() else path.name.lower()
    if not heldout and any(r in name for r in RESERVED):
        raise DataError(f"soundfont {path.name} is reserved (MuseScore General: held-out evaluation, "
                        "rtsep data music4 --heldout; TimGM6mb: the adaptation tests' user instruments); "
                        "train with the GM banks in TRAIN_BANKS")
    if not path.is_file():
        raise DataError(f"soundfont {path} not found; run: {hint}")
    with open(path, "rb") as f:
        head = f.read(12)
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise DataError(f"{path} is not a SoundFont (.sf2/.sf3) file; run: {hint}")
    return path


def _find_soundfonts(soundfonts: list[Path] | None, heldout: bool = False, generator: str = "v2") -> list[Path]:
    """The banks to render with. Given ones are all checked; by default a held-out set uses MuseScore
    General, a v1 set FluidR3_GM, a v2 set every installed bank of TRAIN_BANKS (FluidR3_GM at least).
    Training sets refuse MuseScore General and TimGM6mb, also behind a link such as default-GM.sf3."""
    hint = HELDOUT_HINT if heldout else INSTALL_HINT
    if shutil.which("fluidsynth") is None:
        raise DataError(f"fluidsynth is not installed; run: {hint}")
    if soundfonts:
        return [_check_soundfont(Path(p), heldout, hint) for p in soundfonts]
    if heldout:
        return [_check_soundfont(Path(HELDOUT_SOUNDFONT), heldout, hint)]
    first = _check_soundfont(Path(TRAIN_SOUNDFONTS[0]), heldout, hint)
    if generator == "v1":
        return [first]
    return [first] + [Path(p) for p in list(TRAIN_BANKS)[1:] if Path(p).is_file()]


def _find_soundfont(soundfont: Path | None, heldout: bool = False) -> Path:
    """One bank (generator v1's choice): the given one, else the default."""
    return _find_soundfonts([soundfont] if soundfont is not None else None, heldout, "v1")[0]


def _render(midi: Path, wav: Path, soundfont: Path, sample_rate: int, timeout: float) -> np.ndarray:
    """Render a MIDI file dry with the fluidsynth CLI and return it as mono float32."""
    cmd = ["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(sample_rate),
           "-o", "synth.reverb.active=0", "-o", "synth.chorus.active=0",
           "-o", "synth.dynamic-sample-loading=1",  # loads only the presets used: ~3x faster start
           "-T", "wav", "-O", "float", "-F", str(wav), str(soundfont), str(midi)]
    wav.unlink(missing_ok=True)  # never read a previous clip's render
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise DataError(f"fluidsynth took over {timeout:.0f} s to render {midi.name}") from None
    lines = (res.stderr + res.stdout).strip().splitlines()
    # fluidsynth exits 0 (rendering silence) when it cannot load a file, so read its messages too.
    bad = any("error" in line.lower() or "not a soundfont" in line.lower() for line in lines)
    if bad or res.returncode != 0 or not wav.is_file() or wav.stat().st_size == 0:
        raise DataError(f"fluidsynth failed on {midi.name}: {lines[-1] if lines else f'exit {res.returncode}'}")
    audio, _ = sf.read(str(wav), dtype="float32", always_2d=True)
    return audio.mean(axis=1)


def _render_or_default(midi: Path, wav: Path, soundfont: Path, sample_rate: int, timeout: float,
                       notes: list[Note], channel: int, bpm: float, beats: float) -> np.ndarray:
    """Render; when a bank lacks the drawn program or drum kit (a silent render of real notes),
    render again with the family's first program (kit 0 for drums)."""
    audio = _render(midi, wav, soundfont, sample_rate, timeout)
    if notes and not np.abs(audio).max() > 1e-5:
        program = 0 if channel == 9 else int(mido.MidiFile(str(midi)).tracks[0][1].program) // 8 * 8
        _write_midi(midi, notes, program, channel, bpm, beats)
        audio = _render(midi, wav, soundfont, sample_rate, timeout)
    return audio


def check_music4(clips: int, seconds: float, sample_rate: int, soundfont: Path | list[Path] | None = None,
                 heldout: bool = False, generator: str = "v2", meters: tuple[str, ...] = METERS) -> list[Path]:
    """The banks `make_music4` would render with, or a one-line DataError for arguments it would refuse:
    called before any progress is shown or any file is written."""
    if clips < 1 or seconds <= 0 or sample_rate <= 0:
        raise DataError(f"music4 needs clips >= 1, seconds > 0, sample_rate > 0; got {clips}, {seconds}, {sample_rate}")
    if generator not in GENERATORS:
        raise DataError(f"unknown generator {generator!r} ({' or '.join(GENERATORS)})")
    bad = [m for m in meters if m not in METERS]
    if bad or not meters:
        raise DataError(f"unknown meter {bad[0] if bad else '(none)'!r} (choose from {', '.join(METERS)})")
    given = [soundfont] if isinstance(soundfont, (str, Path)) else soundfont
    return _find_soundfonts(given, heldout, generator)


RECIPE = ".recipe.json"  # what an unfinished folder's clips are rendered from (written before the first one)


def _recipe(seed: int, seconds: float, sample_rate: int, generator: str, fonts: list[Path],
            meters: tuple[str, ...], heldout: bool) -> dict:
    """Everything a clip depends on besides its index (the split's rng is drawn in order)."""
    return {"seed": int(seed), "seconds": float(seconds), "sample_rate": int(sample_rate), "generator": generator,
            "soundfonts": [f.resolve().name for f in fonts], "meters": list(meters) if generator != "v1" else [],
            "heldout": bool(heldout)}


def _same_recipe(out: Path, recipe: dict) -> bool:
    """Whether OUT's existing clips were rendered from `recipe`: then clip i of a split is reused as is,
    so `--clips 1600` over an 800-clip set renders only the new 800 (and an interrupted run resumes)."""
    try:
        old = json.loads((out / RECIPE).read_text())
    except (OSError, ValueError):
        try:  # sets made before the recipe file existed: read it back from the manifest
            m = json.loads((out / "manifest.json").read_text())
        except (OSError, ValueError):
            return False
        version = m.get("version", "v1")
        old = {"seed": m.get("seed"), "seconds": m.get("seconds"), "sample_rate": m.get("sample_rate"),
               "generator": version, "soundfonts": m.get("soundfonts", [m.get("soundfont")]),
               "meters": m.get("meters", []) if version != "v1" else [], "heldout": bool(m.get("heldout"))}
    return old == recipe


def make_music4(out: Path, clips: int, seconds: float, sample_rate: int, seed: int,
                soundfont: Path | list[Path] | None = None, progress: Callable[[int, int], None] | None = None,
                heldout: bool = False, generator: str = "v2", meters: tuple[str, ...] = METERS,
                jobs: int = 2) -> dict:
    """Write OUT/<split>/<source>/<i:05d>.wav for every split and return the manifest.

    Each stem is peak-normalised to 0.9 times a random gain in [0.5, 1], so the source balance
    varies between clips as it does in real mixes. `heldout`: only a test split of `clips` clips,
    rendered by default with MuseScore General, a soundfont no model here was trained or tuned on.
    Generator v2 draws each stem's bank from `soundfont` (one or several; default: every installed
    training bank), a meter from `meters`, and augments each stem (`_augment`). Clips already in OUT from
    the same recipe (`_same_recipe`) are kept, not rendered again.
    """
    out, fonts = Path(out), check_music4(clips, seconds, sample_rate, soundfont, heldout, generator, meters)
    counts = {"test": clips} if heldout else split_counts(clips)
    recipe = _recipe(seed, seconds, sample_rate, generator, fonts, meters, heldout)
    reuse = _same_recipe(out, recipe)
    write_text(out / RECIPE, json.dumps(recipe, sort_keys=True))
    total, done, n = sum(counts.values()), 0, round(seconds * sample_rate)
    timeout = 60.0 + 10.0 * seconds
    info: dict[str, list] = {}
    with tempfile.TemporaryDirectory(prefix="music4-") as tmp, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for split in counts:
            rng = np.random.default_rng(split_seed(seed, split))
            info[split] = []
            for i in range(counts[split]):
                parts, bpm, beats, style = _song(rng, seconds, generator, tuple(meters))
                gains = {src: float(rng.uniform(0.5, 1.0)) for src in SOURCES}
                if generator == "v1":
                    banks, augs = {src: fonts[0] for src in SOURCES}, {}
                else:
                    banks = {src: fonts[int(rng.integers(len(fonts)))] for src in SOURCES}
                    augs = {src: _augment(rng, src) for src in SOURCES}
                jobs_ = {}
                if reuse and all((out / split / src / f"{i:05d}.wav").exists() for src in SOURCES):
                    jobs_ = None  # rendered by an earlier run of the same recipe: clip i depends only on it
                for src in SOURCES if jobs_ is not None else ():
                    notes, program, channel = parts[src]
                    mid, wav = Path(tmp) / f"{src}.mid", Path(tmp) / f"{src}.wav"
                    _write_midi(mid, notes, program, channel, bpm, beats)
                    jobs_[src] = pool.submit(_render_or_default, mid, wav, banks[src], sample_rate, timeout,
                                             notes, channel, bpm, beats)
                for src in SOURCES if jobs_ is not None else ():
                    audio = jobs_[src].result()[:n]
                    audio = np.pad(audio, (0, n - audio.size))
                    if src in augs:
                        audio = apply_augment(audio, sample_rate, augs[src])
                    peak = float(np.abs(audio).max())
                    if peak > 0:
                        audio = audio * (0.9 * gains[src] / peak)
                    write_wav_atomic(out / split / src / f"{i:05d}.wav", audio.astype(np.float32), sample_rate)
                if generator != "v1":
                    info[split].append({**style, "banks": {src: banks[src].name for src in SOURCES}})
                done += 1
                if progress is not None:
                    progress(done, total)
    manifest = {
        "name": "music4", "sources": list(SOURCES), "sample_rate": int(sample_rate), "seconds": float(seconds),
        "seed": int(seed), "soundfont": fonts[0].resolve().name, "splits": counts, "generator": "rtsep.datasets.music4",
        **({"heldout": True} if heldout else {}),
    }
    if generator != "v1":
        manifest.update(version=generator, soundfonts=[f.resolve().name for f in fonts], meters=list(meters),
                        clips=info)
    write_manifest(out, manifest)
    (out / RECIPE).unlink(missing_ok=True)  # the manifest now says the same (`_same_recipe` reads it back)
    return manifest
