"""Bundle: one model directory, read and checked once, that every runtime (Separator, bench, export) takes.

A model directory holds `card.json` (config, provenance, shipped numbers), the torch weights
(`encoder.pt`, `priors/<source>.pt`) and, once exported, ONNX graphs (`onnx/encoder.onnx`,
`onnx/step.onnx`, optional `score_<source>.onnx`). Loading a Bundle reads the card once, checks
that its parts agree (the card's sample rate is every network's, its sources are the encoder's in
the same order, each prior is the one its name says) and verifies the sha256 the card records for
every weight file (`card["weights"]`) and graph (`card["onnx"]["graphs"]`), so a corrupt, edited or
half-copied bundle is refused in one line instead of separating into garbage. `rtsep export`
writes both sets of hashes; `seal` writes the weights' alone. Nothing here imports torch: the
torch networks are built on request (`torch_encoder`, `torch_priors`).

Model names: a bare name (`music4`) is an installed model, found in `models_dir()`, before a folder
of that name in the current directory; anything that looks like a path (`./music4`, `a/b`, an
absolute path) is a directory.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .card import CARD, read_card, sha256, update_card
from .errors import BundleError
from .fullband import HIGHBAND_FILE
from .langevin import LangevinConfig

if TYPE_CHECKING:
    import torch

ENV = "RTSEP_MODELS"
"""Environment variable naming the folder of installed models; it overrides the packaged ones."""
ONNX_ENCODER = "encoder.onnx"
ONNX_STEP = "step.onnx"
ONNX_TF_GRAD = "tf_grad.onnx"
REEXPORT = "corrupt or edited; re-export with `rtsep export {dir}`"


def models_dir() -> Path | None:
    """The folder of installed models: $RTSEP_MODELS, else the models packaged with rtsep (a regular
    `pip install`), else the source checkout's `models/` (an editable install); None when none exists."""
    env = os.environ.get(ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent
    for candidate in (here / "models", here.parent / "models"):
        if candidate.is_dir():
            return candidate
    return None


def installed_models() -> list[Path]:
    """Installed model directories (those holding a card), by name; [] when there are none."""
    root = models_dir()
    if root is None or not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / CARD).is_file())


def _looks_like_path(model: str) -> bool:
    return os.path.isabs(model) or "/" in model or os.sep in model or model in (".", "..")


def resolve_model(model: str | Path) -> Path:
    """A model directory from a name (installed models first, then a folder in the current
    directory) or a path; BundleError, in one line, when there is none."""
    text = os.fspath(model)
    if not text:
        raise BundleError("empty model name")
    if _looks_like_path(text):
        path = Path(text)
        if not path.is_dir():
            raise BundleError(f"{text} is not a model directory (it does not exist)")
        return path
    root = models_dir()
    if root is not None and (root / text).is_dir():
        return root / text
    if Path(text).is_dir():
        return Path(text)
    have = ", ".join(p.name for p in installed_models())
    if not have:
        where = f"{ENV}={os.environ[ENV]}" if os.environ.get(ENV) else "no models folder found"
        raise BundleError(f"no model {text!r}: no models are installed ({where}); set {ENV} to a folder of "
                          "model directories or give a model directory path")
    raise BundleError(f"no model {text!r} (installed models: {have})")


def weight_files(model_dir: Path, card: dict[str, Any]) -> list[str]:
    """The weight files the card's sections name, relative to MODEL_DIR, that exist."""
    names = (["encoder.pt"] if "encoder" in card else []) + [f"priors/{s}.pt" for s in card.get("priors") or {}]
    names += [f"tf_priors/{s}.pt" for s in card.get("tf_priors") or {}]
    names += [HIGHBAND_FILE] if "highband" in card else []
    return [n for n in names if (Path(model_dir) / n).is_file()]


def seal(model_dir: Path) -> dict[str, str]:
    """Record the sha256 of MODEL_DIR's weights (and its ordered sources) in its card, so a Bundle
    refuses them once edited; `rtsep export` calls this. Returns the hashes written."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    hashes = {n: sha256(model_dir / n) for n in weight_files(model_dir, card)}
    update_card(model_dir, "weights", value=hashes)
    enc_sources = (card.get("encoder") or {}).get("config", {}).get("sources")
    update_card(model_dir, "sources", value=list(enc_sources or card.get("sources") or card.get("priors") or []))
    return hashes


def priors_fingerprint(model_dir: Path, sources: list[str] | tuple[str, ...]) -> str:
    """Short hash of the prior weights an encoder is trained under (their bytes, in source order)."""
    h = hashlib.sha256()
    for s in sources:
        h.update((Path(model_dir) / "priors" / f"{s}.pt").read_bytes())
    return h.hexdigest()[:12]


def _int(value: Any, what: str, where: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise BundleError(f"{where}: {what} is {value!r}, not a positive whole number of Hz")
    return value


@dataclass(frozen=True)
class Bundle:
    """A checked model directory: its card, sources, rate, configs and the files that belong to it."""

    path: Path
    card: dict[str, Any] = field(repr=False)
    sources: tuple[str, ...]
    sample_rate: int
    encoder_config: dict[str, Any] | None = field(repr=False)
    prior_configs: dict[str, dict[str, Any]] = field(repr=False)
    langevin: LangevinConfig = field(repr=False)

    @classmethod
    def load(cls, model: str | Path | Bundle, verify: bool = True) -> Bundle:
        """Resolve MODEL (see `resolve_model`), read its card, cross-check it and (with `verify`) the
        sha256 of every file the card records. Raises BundleError with one line naming the problem."""
        if isinstance(model, Bundle):
            return model
        path = resolve_model(model)
        if not (path / CARD).is_file():
            raise BundleError(f"{path} is not a model directory (no {CARD})")
        card = read_card(path)
        where = path / CARD
        priors = card.get("priors") or {}
        if not isinstance(priors, dict) or not priors:
            raise BundleError(f"{path} holds no priors: train them first with `rtsep train prior`")
        configs: dict[str, dict[str, Any]] = {}
        for source, entry in priors.items():
            cfg = entry.get("config") if isinstance(entry, dict) else None
            if not isinstance(cfg, dict):
                raise BundleError(f"{where} has no config for prior {source!r}")
            if cfg.get("source", source) != source:
                raise BundleError(f"{where}: the prior filed as {source!r} was trained on {cfg['source']!r}")
            configs[source] = cfg
        enc = card.get("encoder")
        enc_cfg = None
        if enc is not None:
            enc_cfg = enc.get("config") if isinstance(enc, dict) else None
            if not isinstance(enc_cfg, dict) or not isinstance(enc_cfg.get("sources"), list):
                raise BundleError(f"{where} has no config (with its sources) for the encoder")
            sources = tuple(enc_cfg["sources"])
            missing = [s for s in sources if s not in configs]
            if missing:
                raise BundleError(f"{path} has no prior for source(s) {', '.join(missing)}")
        else:
            sources = tuple(card.get("sources") or configs)
        if "sources" in card and list(card["sources"]) != list(sources):
            raise BundleError(f"{where}: sources {list(card['sources'])} disagree with the encoder's {list(sources)} "
                              "(reordered? the encoder's outputs would be mislabelled)")
        nets = {f"prior {s!r}": c.get("sample_rate") for s, c in configs.items()}
        if enc_cfg is not None:
            nets["the encoder"] = enc_cfg.get("sample_rate")
        nets = {k: v for k, v in nets.items() if v is not None}
        if "sample_rate" in card:
            rate = _int(card["sample_rate"], "sample_rate", where)
        elif nets and len(set(nets.values())) == 1:  # a card written before the top-level rate: the networks'
            rate = _int(next(iter(nets.values())), "the networks' sample_rate", where)
        else:
            raise BundleError(f"{where} has no sample_rate")
        wrong = {k: v for k, v in nets.items() if v != rate}
        if wrong:
            what, got = next(iter(wrong.items()))
            raise BundleError(f"{where}: sample_rate {rate} Hz, but {what} was trained at {got} Hz "
                              "(a card edited apart from its weights?)")
        tf = card.get("tf_priors") or {}
        if tf:
            missing = [s for s in sources if s not in tf or not isinstance(tf[s], dict) or "config" not in tf[s]]
            if missing:
                raise BundleError(f"{where} has no TF prior config for source(s) {', '.join(missing)}")
            wrong = [s for s in sources if tf[s]["config"].get("sample_rate") != rate]
            if wrong:
                raise BundleError(f"{where}: the TF prior of {wrong[0]!r} was trained at "
                                  f"{tf[wrong[0]]['config'].get('sample_rate')} Hz, not {rate} Hz")
        bundle = cls(path, card, sources, rate, enc_cfg, configs, LangevinConfig.from_card(card, path))
        if bundle.langevin.prior == "tf" and not tf:
            raise BundleError(f"{where}: its chain climbs TF priors, and it has none (rtsep train prior --domain tf)")
        if verify:
            bundle.verify()
        return bundle

    # --- files ---------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def has_encoder(self) -> bool:
        return self.encoder_config is not None

    @cached_property
    def highband(self) -> dict[str, np.ndarray] | None:
        """The learned high-band network's weights (`rtsep train highband`), or None: the rule shares it."""
        hb = self.card.get("highband")
        if not hb:
            return None
        path = self.path / HIGHBAND_FILE
        try:
            with np.load(path) as z:
                params = {k: z[k] for k in z.files}
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: cannot read the high-band network ({str(exc).splitlines()[0]})") from None
        cfg = hb.get("config") or {}
        if list(cfg.get("sources") or []) != list(self.sources) or cfg.get("model_rate") != self.sample_rate:
            raise BundleError(f"{self.path}: the high-band network was trained for sources "
                              f"{cfg.get('sources')} at {cfg.get('model_rate')} Hz, not {list(self.sources)} at "
                              f"{self.sample_rate} Hz (rerun `rtsep train highband`)")
        return params

    @property
    def has_tf_priors(self) -> bool:
        return bool(self.card.get("tf_priors"))

    @property
    def onnx_dir(self) -> Path:
        return self.path / (self.card.get("onnx") or {}).get("dir", "onnx")

    @property
    def graphs(self) -> dict[str, str]:
        """Exported graph file -> sha256, as the card records them: empty before `rtsep export`, and
        when the graphs' folder is gone altogether (a copy made for the torch backend); one graph
        missing from the folder is a half-copied bundle, which `verify` refuses."""
        if not self.onnx_dir.is_dir():
            return {}
        return dict((self.card.get("onnx") or {}).get("graphs") or {})

    @property
    def has_onnx(self) -> bool:
        """Whether ONNX Runtime can run this bundle: a step graph, and an encoder graph if it has an encoder."""
        need = [ONNX_STEP] + ([ONNX_ENCODER] if self.has_encoder else [])
        return all(n in self.graphs for n in need)

    def graph(self, name: str) -> Path:
        """The path of an exported graph; BundleError when the bundle has none of that name."""
        path = self.onnx_dir / name
        if name not in self.graphs or not path.is_file():
            raise BundleError(f"{self.path} has no {name}: run `rtsep export {self.path}` first")
        return path

    def weights(self, source: str | None = None) -> Path:
        """encoder.pt, or priors/<source>.pt."""
        return self.path / ("encoder.pt" if source is None else f"priors/{source}.pt")

    def verify(self) -> None:
        """Check the sha256 of every weight file and graph the card records (a listed file that is
        missing is refused too: a half-copied bundle)."""
        files = [(self.path / n, h) for n, h in (self.card.get("weights") or {}).items()]
        files += [(self.onnx_dir / n, h) for n, h in self.graphs.items()]
        for path, want in files:
            if not path.is_file():
                raise BundleError(f"{path}: missing (the card lists it; copy the whole model directory)")
            if sha256(path) != want:
                raise BundleError(f"{path}: sha256 mismatch ({REEXPORT.format(dir=self.path)})")

    # --- torch (training, export, the eager backend) -------------------------------------------

    def torch_tf_priors(self) -> list[torch.nn.Module]:
        """The TF priors, in source order, in eval mode (imports torch); [] when the bundle has none."""
        from .nn.tfprior import TFPrior, TFPriorConfig

        out = []
        for s in self.sources if self.has_tf_priors else ():
            cfg = _build(TFPriorConfig.from_dict, self.card["tf_priors"][s]["config"], f"TF prior {s!r}", self.path)
            out.append(load_state(self.path / "tf_priors" / f"{s}.pt", _build(TFPrior, cfg, f"TF prior {s!r}",
                                                                              self.path)).eval())
        return out

    def torch_encoder(self) -> torch.nn.Module:
        """The encoder as a torch module in eval mode (imports torch)."""
        from .nn.encoder import Encoder, EncoderConfig

        if self.encoder_config is None:
            raise BundleError(f"{self.path} has no encoder (train one with `rtsep train encoder`)")
        cfg = _build(EncoderConfig.from_dict, self.encoder_config, "the encoder", self.path)
        return load_state(self.weights(), _build(Encoder, cfg, "the encoder", self.path)).eval()

    def torch_priors(self) -> list[torch.nn.Module]:
        """The priors, in source order, as torch modules in eval mode (imports torch)."""
        from .nn.flow import FlowPrior, PriorConfig

        out = []
        for s in self.sources:
            cfg = _build(PriorConfig.from_dict, self.prior_configs[s], f"prior {s!r}", self.path)
            out.append(load_state(self.weights(s), _build(FlowPrior, cfg, f"prior {s!r}", self.path)).eval())
        return out


def _build(make: Any, arg: Any, what: str, model_dir: Path) -> Any:
    try:
        return make(arg)
    except Exception as exc:  # a config whose numbers cannot make a network
        raise BundleError(f"{model_dir / CARD}: bad config for {what}: {str(exc).splitlines()[0]}") from None


def load_state(path: Path, module: torch.nn.Module) -> torch.nn.Module:
    """Load a state dict (tensors only, no pickled classes) into MODULE; BundleError when the file
    is missing, unreadable or does not fit the config."""
    import torch

    if not path.is_file():
        raise BundleError(f"missing weights {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BundleError(f"{path}: unreadable weights ({str(exc).splitlines()[0]})") from None
    try:
        module.load_state_dict(state)
    except Exception as exc:
        raise BundleError(f"weights {path} do not match the model config: {str(exc).splitlines()[0]}") from None
    return module
