"""Render MODEL_DIR/CARD.md from MODEL_DIR/card.json (the card.json is the source of truth).

    python tools/write_card.py models/music4 [--note "free text"]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rtsep.atomic import write_text  # noqa: E402
from rtsep.card import read_card  # noqa: E402
from rtsep.separation_eval import chain_flags  # noqa: E402


def fmt_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def render(model_dir: Path, card: dict, note: str = "") -> str:
    name = model_dir.name
    sources = list(card.get("priors", {}))
    out = [f"# Model card: `{name}`", "", note, "",
           f"Sources: {', '.join(sources)}; sample rate {card.get('sample_rate')} Hz. "
           "Everything below is copied from `card.json` beside the weights (the machine-readable card).", ""]
    out += ["## Priors (one noise-conditioned flow per source, trained on that source alone)", ""]
    rows = []
    for s, e in card.get("priors", {}).items():
        c, t = e["config"], e.get("training", {})
        rows.append([s, f"{c['n_flows']} couplings, hidden {c['hidden']}, {c['layers']} layers, squeeze {c['squeeze']}, mixing {c.get('mixing', 'flip')}",
                     str(t.get("steps_done")), f"{t.get('seconds', 0) / 60:.1f} min", t.get("machine", "?"),
                     str(t.get("valid_nll")), str(t.get("data"))])
    out.append(fmt_table(["source", "architecture", "steps", "train time", "hardware", "valid NLL (nats/sample)", "data"], rows))
    pe = card.get("prior_eval")
    if pe:
        out += ["", f"### Cross-likelihood (mean log p per sample, nats; held-out `{pe['data']}` split `{pe['split']}`, "
                f"{pe['clips']} excerpts of {pe['segment']} samples per source)", "",
                f"Discriminative at every sampler sigma: **{pe['discriminative']}**, smallest margin "
                f"**{pe['min_margin']:+.3f} nats/sample**. Command: `rtsep eval priors {model_dir} --data {pe['data']}`.", ""]
        for sigma, mat, margin, gc, gn in zip(pe["sigmas"], pe["loglik"], pe["min_margin_per_sigma"],
                                              pe["score_rms_clean"], pe["score_rms_noisy"]):
            out += [f"sigma = {sigma:.4g} (margin {margin:+.3f}); rows = prior, columns = data", ""]
            out.append(fmt_table(["prior \\ data", *pe["sources"]],
                                 [[p, *[f"**{v:.3f}**" if v == max(r[j] for r in mat) else f"{v:.3f}" for j, v in enumerate(row)]]
                                  for p, row in zip(pe["sources"], mat)]))
            out += ["", "Score RMS (smoothness) clean / noised: " + ", ".join(f"{s} {gc[s]:.1f} / {gn[s]:.1f}" for s in pe["sources"]), ""]
    tf = card.get("tf_priors")
    if tf:
        out += ["", "## TF priors (one flow per source over log band energies of STFT frames, that source alone)", ""]
        rows = []
        for s, e in tf.items():
            c, t = e["config"], e.get("training", {})
            rows.append([s, f"{c['layers']} couplings, MLP {c['hidden']}, {c['bands']} bands, context {c['context']} frames",
                         str(t.get("steps_done")), f"{t.get('seconds', 0) / 60:.1f} min", t.get("machine", "?"),
                         str(t.get("valid_log_prob_per_frame")), str(t.get("data")), str(t.get("init_from") or "-")])
        out.append(fmt_table(["source", "architecture", "steps", "train time", "hardware", "valid log p (nats/frame)",
                              "data", "fine-tuned from"], rows))
    for key, pe in (card.get("tf_prior_eval") or {}).items():
        out += ["", f"### TF cross-likelihood on `{pe['data']}` (mean log p per STFT frame, {pe['clips']} excerpts of "
                f"{pe['frames']} frames per source)", "",
                f"Discriminative at every sigma: **{pe['discriminative']}**; margin per sigma "
                + ", ".join(f"{sg:g}: {m:+.2f}" for sg, m in zip(pe["sigmas"], pe["min_margin_per_sigma"]))
                + f" nats/frame. Command: `rtsep eval priors {model_dir} --domain tf --data {pe['data']} --clips {pe['clips']}`.", ""]
        for sigma, mat, wins in zip(pe["sigmas"], pe["loglik"], pe["own_prior_wins"]):
            out += [f"sigma = {sigma:g}; own prior best on " + ", ".join(f"{s} {w:.0%}" for s, w in wins.items())
                    + " of excerpts", ""]
            out.append(fmt_table(["prior \\ data", *pe["sources"]],
                                 [[p, *[f"**{v:.1f}**" if v == max(r[j] for r in mat) else f"{v:.1f}" for j, v in enumerate(row)]]
                                  for p, row in zip(pe["sources"], mat)]))
            out.append("")
    ch = card.get("chain")
    if ch:
        t, v = ch["training"], ch["valid_si_sdri"]
        out += ["", f"## Learned chain (K = {ch['chain_steps']}, `rtsep train chain`)", "",
                f"{t['steps_done']} steps of batch {t['batch']} x {t['seconds']} s on `{t['data']}` in "
                f"{t['elapsed_seconds'] / 60:.1f} min; stems used for: {ch['stems_used_for']}. "
                f"Learned: `{json.dumps(ch['learned'])}`. Valid-split SI-SDRi encoder -> chain: "
                + ", ".join(f"{s} {v['encoder'][s]:+.2f} -> {v['chain'][s]:+.2f}" for s in v["encoder"]) + "."
                + (" The fine-tuned encoder alone: " + ", ".join(f"{s} {v['encoder_tuned'][s]:+.2f}" for s in v["encoder"])
                   + "." if "encoder_tuned" in v else ""), ""]
    ad = card.get("adapted")
    if ad and ad.get("status") == "done":
        out += ["## Adaptation (`rtsep adapt`)", "",
                f"Base `{ad['base']}`, objective {ad['objective']}, {ad['minutes_with_export']} min; adapted "
                f"{', '.join(ad['adapted_sources'])} from `{ad['sources_dir']}` ("
                + ", ".join(f"{s}: {d['files']} files, {d['bytes'] / 1e6:.1f} MB, sha256 {d['sha256'][:12]}" for s, d in ad["data"].items())
                + f"); encoder {ad['encoder']['steps_done']} steps.", ""]
    enc = card.get("encoder")
    if enc:
        c, t = enc["config"], enc["training"]
        out += ["## Encoder q(s_k | m)", "",
                f"Objective **{t['objective']}**, {t['steps_done']} steps of batch {t['batch']} x {t['segment']} samples, "
                f"{t['seconds'] / 60:.1f} min on {t.get('machine', '?')}; KL sigma {t.get('kl_sigma')}, gamma {t.get('gamma')}; "
                f"filters {c['filters']}, hidden {c['hidden']}, {c['blocks']} blocks x {c['repeats']}, "
                f"receptive field {(2 ** c['blocks'] - 1) * c['repeats'] * c['stride'] + c['stride']} samples per side. "
                f"Data: `{t['data']}` ({mixtures(t)})."
                + (" Runs: " + "; ".join(f"`{r['data']}` from step {r['from_step']}" for r in t["runs"]) + "."
                   if len(t.get("runs", [])) > 1 else "")
                + (f" Initialised from `{t['init_from']}`." if t.get("init_from") else ""), ""]
        if t.get("valid_curve"):
            out += ["Validation curve (valid-split SI-SDRi, dB): " + "; ".join(
                f"step {v['step']}: " + " / ".join(f"{v[k]:+.2f}" for k in v if k.startswith("valid_"))
                for v in t["valid_curve"][-6:]) + ".", ""]
        ft = enc.get("chain_fine_tune")
        if ft:
            out += [f"Then fine-tuned through the K = {ft['chain_steps']} chain (`rtsep train chain --encoder-lr "
                    f"{ft['encoder_lr']:g}`): {ft['steps']} steps of batch {ft['batch']} x {ft['seconds']} s on "
                    f"`{ft['data']}`, {ft['elapsed_seconds'] / 60:.1f} min with the chain's numbers.", ""]
    for key, res in card.get("separation_eval", {}).items():
        out += [f"## Separation, `{key}`: SI-SDRi in dB, median (mean), {res['clips']} held-out mixtures of "
                f"{res['seconds']:.1f} s from `{res['data']}`, backend {res['backend']}", ""]
        rows = [[k, *[f"{v[s]['si_sdri_median']:+.1f} ({v[s]['si_sdri_mean']:+.1f})" for s in res["sources"]]]
                for k, v in res["table"].items()]
        out.append(fmt_table(["estimate", *res["sources"]], rows))
        out += ["", f"Command: `rtsep eval separate {res.get('model', model_dir)} --data {res['data']} --steps {res['steps']}"
                f"{chain_flags(res)} --clips {res['clips']} --seconds {res['seconds']:g}"
                f"{' --whole' if res.get('whole_clips') else ''}{'' if res.get('split', 'test') == 'test' else ' --split ' + res['split']}`", ""]
    bench = card.get("bench_cpu")
    if bench:
        out += ["## Speed (live geometry, CPU)", "", f"Command: `{bench['command']}`. {bench.get('note', '')}", ""]
        out.append(fmt_table(["engine", "steps", "RTF", "p50 ms", "p99 ms", "latency ms"],
                             [[r["engine"], str(r["steps"]), f"{r['rtf']:.3f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                               f"{r['latency_ms']:.0f}"] for r in bench["records"]]))
        out.append("")
    if card.get("langevin"):
        out += ["## Langevin defaults", "", "`" + json.dumps(card["langevin"]) + "`", ""]
    if card.get("notes"):
        out += ["## Notes", "", *[f"- {n}" for n in card["notes"]], ""]
    return "\n".join(out) + "\n"


def mixtures(t: dict) -> str:
    """What the encoder's training mixtures were made of."""
    if t.get("objective") == "supervised":
        share = float(t.get("coherent", 0.0))
        return (f"supervised: {share:.0%} of the mixtures a clip's own aligned stems, the rest independent random "
                "excerpts mixed" if share else "supervised: independent random excerpts mixed, their stems the targets")
    return "mixtures of independent random excerpts; no paired stems"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    text = render(a.model_dir, read_card(a.model_dir), a.note)
    write_text(a.model_dir / "CARD.md", text)
    print(f"wrote {a.model_dir / 'CARD.md'}")


if __name__ == "__main__":
    main()
