"""Zarr and OME-Zarr images read region by region, like `TiffSource`: never read whole.

An input store is a plain zarr array (`yx`, `cyx`, or the axes its zarr v3
`dimension_names` give) or an OME-Zarr image group (NGFF 0.4 in zarr v2, 0.5
in zarr v3), of which the full-resolution level (the first dataset of the
first multiscale) is read, with the axes its metadata names. Time and z axes
must have size 1 (they are dropped); any other layout, and pixels that are
not integers or floats, are refused with a one-line error naming the store.

A mask store (`mask=True`) is an integer array (y, x), or an OME-Zarr labels
image: the store's root, or the one label image its `labels/` group lists
(as `--out-format zarr` writes them).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from ..errors import UserError, first_line
from .images import check_pixels

ONE_IMAGE = "store one 2-D image per store: (y, x) or (c, y, x), t and z of size 1"
ONE_MASK = "store a mask as an integer (y, x) array or an OME-Zarr labels image"


class ZarrSource:
    """One 2-D image of a zarr store as `(C, H, W)`, read region by region.

    `spatial` carries an OME-Zarr input's y/x axes (units), pixel size and
    offset, for outputs on the same grid; None for a plain array.
    """

    def __init__(self, path: str | Path, mask: bool = False):
        self.path = Path(path)
        with _reading(self.path):
            import zarr

            node = zarr.open(str(self.path), mode="r")
            self._array, axes, multiscale = _image_array(_label_image(node, self.path) if mask else node, self.path)
        self._roles = _roles(axes, self._array.shape, self.path)
        sizes = dict(zip(self._roles, self._array.shape))
        self.shape = (sizes.get("c", 1), sizes["y"], sizes["x"])
        self.dtype = np.dtype(self._array.dtype)
        self._check_dtype(mask)
        self.spatial = None if multiscale is None else _spatial(multiscale, axes, self._roles)

    def _check_dtype(self, mask: bool) -> None:
        if mask and (self.dtype.kind not in "iub" or self.shape[0] != 1):
            raise UserError(f"zarr mask store holds {self.shape[0]} channel(s) of {self.dtype}", path=self.path, fix=ONE_MASK)
        if not mask and self.dtype.kind not in "iuf":  # bool is no image either: a mask or flag array
            raise UserError(f"zarr store holds {self.dtype} pixels", path=self.path, fix="store the image as integers or floats")

    def read(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        region = {"y": slice(y0, y1), "x": slice(x0, x1), "c": slice(None)}
        index = tuple(region.get(role, 0) for role in self._roles)  # t and z: their only entry
        with _reading(self.path):
            box = np.asarray(self._array[index])
        check_pixels(box, self.path)
        kept = [role for role in self._roles if role in "cyx"]
        return box[None] if "c" not in kept else np.moveaxis(box, kept.index("c"), 0)

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _reading(path: Path):
    """Every way a store read can fail -> a one-line UserError naming the store."""
    if not path.exists():
        raise UserError("zarr store not found", path=path, fix="check the path")
    try:
        yield
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - zarr's and its codecs' errors mean an unreadable store
        raise UserError(f"cannot read zarr store ({first_line(exc)})", path=path,
                        fix="pass a zarr array or an OME-Zarr image (zarr.json, or .zarray/.zgroup, inside)") from exc


def _label_image(node, path: Path):
    """A mask store's node: the one label image its `labels/` group lists, else the store itself."""
    import zarr

    if not isinstance(node, zarr.Group) or "labels" not in node:
        return node
    labels = node["labels"].attrs.asdict()
    names = labels.get("ome", labels).get("labels", [])  # NGFF 0.5 under "ome", 0.4 at the top
    if len(names) != 1:
        raise UserError(f"zarr store lists {len(names)} label images ({', '.join(names)})", path=path,
                        fix="pass the label image itself (STORE/labels/NAME), or a store with one")
    return node[f"labels/{names[0]}"]


def _image_array(node, path: Path):
    """(array, NGFF axes as dicts, the multiscale or None) of an array or an OME-Zarr image group."""
    import zarr

    if isinstance(node, zarr.Array):
        names = getattr(node.metadata, "dimension_names", None)
        if names and all(names):
            return node, [{"name": name} for name in names], None
        default = {2: "yx", 3: "cyx"}.get(node.ndim)
        if default is None:
            raise UserError(f"{node.ndim}-D zarr array {node.shape} without axis names", path=path,
                            fix=f"{ONE_IMAGE}; name other axes (zarr v3 dimension_names or OME-Zarr)")
        return node, [{"name": name} for name in default], None
    attributes = node.attrs.asdict()
    multiscales = attributes.get("ome", attributes).get("multiscales")  # NGFF 0.5 under "ome", 0.4 at the top
    if not multiscales:
        raise UserError("zarr group is no OME-Zarr image (no multiscales metadata)", path=path,
                        fix="pass the array itself (STORE/NAME) or an OME-Zarr image group")
    multiscale = multiscales[0]
    array = node[multiscale["datasets"][0]["path"]]
    if not isinstance(array, zarr.Array):
        raise UserError(f"OME-Zarr level {multiscale['datasets'][0]['path']!r} is no array", path=path, fix="repair its multiscales datasets")
    axes = multiscale.get("axes") or [{"name": name} for name in "tczyx"[-array.ndim :]]  # NGFF 0.3 and older: 5-D
    axes = [axis if isinstance(axis, dict) else {"name": axis} for axis in axes]  # NGFF 0.3: names only
    if len(axes) != array.ndim:
        raise UserError(f"OME-Zarr names {len(axes)} axes for a {array.ndim}-D array", path=path, fix="repair its multiscales axes")
    return array, axes, multiscale


def _roles(axes: list[dict], shape: tuple[int, ...], path: Path) -> str:
    """One letter per axis, t c z y x (by NGFF type or name; the last two space axes are y and x); refuses the rest."""
    roles = []
    for axis in axes:
        name, kind = str(axis.get("name", "")).lower(), axis.get("type")
        roles.append("t" if kind == "time" or name == "t" else "c" if kind == "channel" or name == "c"
                     else "s" if kind == "space" or name in ("z", "y", "x") else "?")
    space = [i for i, role in enumerate(roles) if role == "s"]
    for i, role in zip(reversed(space), "xyz"):
        roles[i] = role
    described = ",".join(str(axis.get("name", "?")) for axis in axes)
    if "?" in roles or "s" in roles or "y" not in roles or roles.count("c") > 1 or roles.count("t") > 1:
        raise UserError(f"zarr axes {described} {tuple(shape)} are not an image's (t, c, z, y, x)", path=path, fix=ONE_IMAGE)
    for role, size in zip(roles, shape):
        if role in "tz" and size != 1:
            raise UserError(f"zarr axes {described} {tuple(shape)}: {role} has {size} entries", path=path, fix=ONE_IMAGE)
    return "".join(roles)


def _spatial(multiscale: dict, axes: list[dict], roles: str) -> dict:
    """The y/x axes, pixel size and offset of level 0: its scale and translation, then the multiscale's own."""
    scale, shift = np.ones(len(roles)), np.zeros(len(roles))
    for transforms in (multiscale["datasets"][0].get("coordinateTransformations", []), multiscale.get("coordinateTransformations", [])):
        for transform in transforms:
            if transform.get("type") == "scale" and "scale" in transform:
                scale, shift = scale * transform["scale"], shift * transform["scale"]
            elif transform.get("type") == "translation" and "translation" in transform:
                shift = shift + transform["translation"]
    yx = [roles.index("y"), roles.index("x")]
    return {"axes": [dict(axes[i]) for i in yx], "scale": [float(scale[i]) for i in yx], "translation": [float(shift[i]) for i in yx]}
