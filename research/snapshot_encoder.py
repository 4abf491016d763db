"""Copy a training run's checkpointed encoder into another model directory, to evaluate it mid-run.

    python research/snapshot_encoder.py runs/m4x runs/m4x-snap
"""

import json
import shutil
import sys
from pathlib import Path

import torch

src, dst = Path(sys.argv[1]), Path(sys.argv[2])
ckpt = torch.load(src / "ckpt" / "encoder.pt", map_location="cpu", weights_only=False)
dst.mkdir(parents=True, exist_ok=True)
shutil.copytree(src / "priors", dst / "priors", dirs_exist_ok=True)
card = {k: v for k, v in json.loads((src / "card.json").read_text()).items() if k not in ("encoder", "weights")}
card["encoder"] = {"config": ckpt["config"], "training": {"steps_done": ckpt["step"], "snapshot_of": str(src)}}
torch.save(ckpt["model"], dst / "encoder.pt")
(dst / "card.json").write_text(json.dumps(card, indent=1))
print(f"{dst}: encoder at step {ckpt['step']}")
