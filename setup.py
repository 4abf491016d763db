"""Packaging that pyproject.toml cannot express: the repository's top-level `models/` folder ships inside
the package as `rtsep/models/` (package data), so a regular (non-editable) `pip install .` finds the
installed models (`rtsep.bundle.models_dir`). Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

MODEL_FILES = ["*/card.json", "*/CARD.md", "*/encoder.pt", "*/priors/*.pt", "*/tf_priors/*.pt", "*/onnx/*.onnx",
               "*/onnx/manifest.json", "*/highband.npz",
               "*/prior_eval.json", "*/prior_eval.png"]

setup(packages=[*find_packages(include=["rtsep", "rtsep.*"]), "rtsep.models"],
      package_dir={"rtsep.models": "models"},
      package_data={"rtsep.models": MODEL_FILES})
