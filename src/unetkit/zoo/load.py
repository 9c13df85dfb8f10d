"""A bioimage.io package that unetkit wrote -> a `checkpoint.Run`, for the same overlap-tile predictor as a run folder.

Read with the standard library and torch only (bioimageio.core is not needed):
rdf.yaml's `config.unetkit.run` is the run's config.json and the
`pytorch_state_dict` weights are the U-Net's under `net.`. Anything else (a
package of another format version, or of a network unetkit did not write) is
refused in one line that points to bioimageio.core, which runs any package.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import torch
import yaml

from ..checkpoint import Run
from ..config import DataConfig, ModelConfig, from_dict
from ..errors import UserError, first_line
from ..model import build_model

RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
FORMAT_VERSION = "0.5."
ELSEWHERE = "run it with bioimageio.core instead (`bioimageio predict PACKAGE --inputs IMAGE`)"


def is_package(path: str | Path) -> bool:
    """Whether `path` is a file that may be a bioimage.io package (a zip), rather than a run folder."""
    return Path(path).is_file() and zipfile.is_zipfile(path)


def read_rdf(archive: zipfile.ZipFile, path) -> dict:
    """The package's rdf.yaml as a dict."""
    name = next((n for n in archive.namelist() if n in RDF_NAMES), None)
    if name is None:
        raise UserError("not a bioimage.io package (no rdf.yaml in the zip)", path=path, fix="pass a run folder or a .bioimageio.zip")
    try:
        rdf = yaml.safe_load(archive.read(name))
    except yaml.YAMLError as exc:
        raise UserError(f"unreadable rdf.yaml ({first_line(exc)})", path=path, fix="export it again") from exc
    if not isinstance(rdf, dict):
        raise UserError("rdf.yaml is not a mapping", path=path, fix="export it again")
    return rdf


def unetkit_parts(rdf: dict, path) -> tuple[dict, str]:
    """(the run's config.json, the name of the state dict in the zip) of a package unetkit wrote; refuses any other."""
    kind, version = rdf.get("type"), str(rdf.get("format_version", "?"))
    if kind != "model" or not version.startswith(FORMAT_VERSION):
        raise UserError(f"unetkit runs bioimage.io models of format {FORMAT_VERSION}x, this is a {kind} of format {version}",
                        path=path, fix=ELSEWHERE)
    config = ((rdf.get("config") or {}).get("unetkit") or {}).get("run")
    if not isinstance(config, dict) or "model" not in config:
        raise UserError("this bioimage.io model was not written by unetkit (no config.unetkit in its rdf.yaml)", path=path, fix=ELSEWHERE)
    weights = ((rdf.get("weights") or {}).get("pytorch_state_dict") or {}).get("source")
    return config, str(weights)


def load_package(path: str | Path) -> Run:
    """The run inside a package that unetkit wrote (its network in eval mode, its data config)."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise UserError(f"unreadable package ({first_line(exc)})", path=path, fix="pass a run folder or a .bioimageio.zip") from exc
    with archive:
        config, weights = unetkit_parts(read_rdf(archive, path), path)
        state = _state_dict(archive, weights, path)
    source = f"{path}: config.unetkit.run"
    model = build_model(from_dict(ModelConfig, config["model"], source=source))
    data = from_dict(DataConfig, config.get("data", {}), source=source)
    try:
        model.load_state_dict({k.removeprefix("net."): v for k, v in state.items()}, strict=True)
    except (AttributeError, RuntimeError) as exc:
        raise UserError(f"the package's weights do not fit its network ({first_line(exc)})", path=path, fix="export it again") from exc
    return Run(model=model.eval(), data=data, config=config, path=Path(path))


def _state_dict(archive: zipfile.ZipFile, name: str, path) -> dict:
    try:
        return torch.load(io.BytesIO(archive.read(name)), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a missing, damaged or hostile file (weights_only refuses code)
        raise UserError(f"the package's pytorch_state_dict weights do not load ({first_line(exc)})", path=path, fix="export it again") from exc
