"""An HTML report people can read: a score table, error overlays, plots, and any extra figures.

`write_report(out_dir, results, overlays=..., extra_figures=..., title=..., headline=...)`
writes `report.html` plus its PNGs (`overlays/`, `plots/`, `figures/`) into
`out_dir`; the page needs nothing else (no scripts, no web fonts). Every file
is written atomically. `results` is what `unetkit.evaluate` returns (or None
for a page of figures only); `extra_figures` takes PNG paths or
(caption, path) pairs, e.g. a training run's `curves.png`.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np

from ..io import atomic_path, write_bytes, write_image, write_text
from .overlays import COLOURS

TABLE_KEYS = (
    ("pixel_error", "pixel error"),
    ("mean_iou", "mean IoU"),
    ("dice", "Dice"),
    ("rand_error", "Rand error"),
    ("info_error", "information error"),
    ("warping_error", "warping error"),
    ("pixel_error_fscore", "pixel error (1 - F)"),
    ("ap", "AP 0.5:0.95"),
    ("ap_50", "AP 0.5"),
    ("seg", "SEG"),
)
PLOTTED_KEYS = ("pixel_error", "rand_error", "info_error", "warping_error")


def write_report(
    out_dir: str | Path,
    results: dict | None,
    *,
    overlays: dict | None = None,
    extra_figures=(),
    title: str = "unetkit evaluation",
    headline: str | None = None,
) -> Path:
    """Write `out_dir/report.html` and its PNGs; returns the HTML path.

    `overlays`: image name -> (H, W, 3) uint8 (see `overlays.error_overlay`);
    `extra_figures`: PNG paths or (caption, path) pairs, copied beside the
    page; `headline`: a sentence shown under the title.
    """
    out_dir = Path(out_dir)
    sections = [f"<h1>{html.escape(title)}</h1>"]
    if headline:
        sections.append(f'<p class="headline">{html.escape(headline)}</p>')
    if results:
        sections += [_settings(results), _score_table(results), _threshold_table(results)]
        sections.append(_plots(out_dir, results))
    sections.append(_extra_figures(out_dir, extra_figures))
    if overlays:
        sections.append(_overlays(out_dir, overlays, (results or {}).get("images", {})))
    if results:
        sections.append(DEFINITIONS)
    page = PAGE.format(title=html.escape(title), body="\n".join(s for s in sections if s))
    path = out_dir / "report.html"
    write_text(path, page)
    return path


# --------------------------------------------------------------------------- sections


def _number(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "&ndash;"
    if isinstance(value, int) or float(value).is_integer() and abs(value) >= 1:
        return str(int(value))
    return f"{value:.{digits}g}" if 0 < abs(value) < 0.01 else f"{value:.{digits}f}"  # small errors keep 4 digits


def _settings(results: dict) -> str:
    settings = results.get("settings", {})
    shown = ", ".join(f"{html.escape(str(k))} = {html.escape(str(v))}" for k, v in settings.items())
    return f'<p class="settings">{shown}</p>' if shown else ""


def _score_table(results: dict) -> str:
    rows = [("set as one stack", results.get("stack")), ("mean over images", results.get("mean"))]
    rows += list(results.get("images", {}).items())
    rows = [(name, scores) for name, scores in rows if scores]
    columns = [(key, label) for key, label in TABLE_KEYS if any(scores.get(key) is not None for _, scores in rows)]
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = []
    for i, (name, scores) in enumerate(rows):
        css = ' class="aggregate"' if i < 2 and name in ("set as one stack", "mean over images") else ""
        cells = "".join(f"<td>{_number(scores.get(key))}</td>" for key, _ in columns)
        body.append(f"<tr{css}><th>{html.escape(str(name))}</th>{cells}</tr>")
    return f"<h2>Scores</h2>\n<table>\n<tr><th>image</th>{head}</tr>\n" + "\n".join(body) + "\n</table>"


def _threshold_table(results: dict) -> str:
    stack = results.get("stack") or {}
    rows = []
    for key in ("rand_error", "info_error", "warping_error", "warping_error_classic", "pixel_error_fscore"):
        if stack.get(key) is None:
            continue
        rows.append(
            f"<tr><th>{key.replace('_', ' ')}</th><td>{_number(stack[key])}</td>"
            f"<td>{_number(stack.get(f'{key}_threshold'), 2)}</td><td>{_number(stack.get(f'{key}_at_0.5'))}</td></tr>"
        )
    if not rows:
        return ""
    counts = f"<p>At the best warping threshold: {_number(stack.get('splits'))} split and {_number(stack.get('merges'))} merge pixels.</p>"
    return (
        "<h2>ISBI 2012 scores of the stack</h2>\n<table>\n<tr><th>score</th><th>best</th><th>threshold</th><th>at 0.5</th></tr>\n"
        + "\n".join(rows)
        + "\n</table>\n"
        + counts
    )


def _plots(out_dir: Path, results: dict) -> str:
    import matplotlib

    matplotlib.use("Agg")
    parts = []
    images = results.get("images", {})
    keys = [k for k in PLOTTED_KEYS if any(s.get(k) is not None for s in images.values())]
    if images and keys:
        _save_figure(_error_bars(images, keys), out_dir / "plots" / "errors.png")
        parts.append(_figure("plots/errors.png", "Errors per image."))
    sweep = results.get("sweep")
    if sweep and len(sweep["thresholds"]) > 1:
        _save_figure(_sweep_curves(sweep), out_dir / "plots" / "sweep.png")
        parts.append(_figure("plots/sweep.png", "Errors of the stack against the binarisation threshold (p > t)."))
    return "<h2>Plots</h2>\n" + "\n".join(parts) if parts else ""


def _error_bars(images: dict, keys: list[str]):
    import matplotlib.pyplot as plt

    names = list(images)
    fig, axes = plt.subplots(len(keys), 1, figsize=(max(6, 0.25 * len(names) + 2), 1.8 * len(keys)), squeeze=False)
    for ax, key in zip(axes[:, 0], keys):
        values = [np.nan if images[n].get(key) is None else images[n][key] for n in names]
        ax.bar(range(len(names)), values, color="#4a78b5")
        ax.set_ylabel(key.replace("_", " "), fontsize=8)
        ax.set_xticks(range(len(names)) if len(names) <= 40 else [])
        ax.set_xticklabels(names if len(names) <= 40 else [], rotation=90, fontsize=7)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


def _sweep_curves(sweep: dict):
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4))
    for key in ("rand_error", "info_error", "pixel_error_fscore"):
        left.plot(sweep["thresholds"], sweep[key], marker="o", label=key.replace("_", " "))
    left.set_xlabel("threshold t")
    left.set_ylabel("error")
    left.legend(fontsize=8)
    for key in ("warping_error", "warping_error_classic"):
        values = [np.nan if v is None else v for v in sweep[key]]
        right.plot(sweep["warping_thresholds"], values, marker="o", label=key.replace("_", " "))
    right.set_xlabel("threshold t")
    right.set_ylabel("mismatched pixels / pixels")
    right.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _save_figure(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _figure(src: str, caption: str) -> str:
    return f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _extra_figures(out_dir: Path, extra_figures) -> str:
    parts = []
    for i, item in enumerate(extra_figures):
        caption, path = item if isinstance(item, (tuple, list)) else (Path(item).stem.replace("_", " "), item)
        path = Path(path)
        target = f"figures/{i:02d}_{_safe_name(path.name)}"
        write_bytes(out_dir / target, path.read_bytes())
        parts.append(_figure(target, caption))
    return "<h2>Figures</h2>\n" + "\n".join(parts) if parts else ""


def _overlays(out_dir: Path, overlays: dict, images: dict) -> str:
    legend = " ".join(
        f'<span class="swatch" style="background: rgb{COLOURS[k]}"></span>{k.replace("_", " ")}' for k in COLOURS if k != "ignored"
    )
    parts = [
        "<h2>Where the prediction is wrong</h2>",
        f"<p>{legend}. Predictions binarised at 0.5; positive = not the boundary class. "
        "Split and merge pixels (left by the warping error at 0.5) are drawn 3 x 3.</p>",
        '<div class="grid">',
    ]
    for name, image in overlays.items():
        if image is None:
            continue
        target = f"overlays/{_safe_name(name)}.png"
        write_image(out_dir / target, np.moveaxis(image, -1, 0))
        scores = images.get(name, {})
        caption = f"{name}: pixel error {_number(scores.get('pixel_error'))}"
        if scores.get("warping_error_at_0.5") is not None:
            caption += f", splits/merges at 0.5 per pixel {_number(scores['warping_error_at_0.5'])}"
        parts.append(_figure(target, caption))
    return "\n".join(parts + ["</div>"])


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


DEFINITIONS = """<h2>Definitions</h2>
<ul>
<li><b>pixel error</b>: 1 - pixel accuracy of the predicted classes (argmax, or p &gt; 0.5).
<b>pixel error (1 - F)</b>: the ISBI 2012 challenge's, 1 - F-score of the foreground pixels at the best threshold.</li>
<li><b>Rand error</b>: 1 - foreground-restricted Rand F-score V<sub>rand</sub> (Arganda-Carreras et al. 2015):
only ground-truth foreground pixels count, predicted-membrane pixels are singletons, pairs counted as N<sup>2</sup>.</li>
<li><b>information error</b>: 1 - V<sub>info</sub>, the information-theoretic analogue (harmonic mean of the
information split and merge scores), same restriction.</li>
<li><b>warping error</b>: the ground truth is warped toward the prediction by flipping simple points only
(Jain et al. 2010; (4, 8) connectivity); the split and merge pixels left, per pixel.</li>
<li><b>AP</b>: TP / (TP + FP + FN) of objects matched at IoU &gt; t, averaged over t = 0.5, 0.55, ..., 0.95.
<b>SEG</b>: mean Jaccard index of each ground-truth object with the predicted object covering more than half of it.</li>
<li><b>set as one stack</b>: counts pooled over all images and one threshold per score (as the challenge scored
its stack); <b>mean over images</b>: the average of the per-image scores, each at its own best threshold.</li>
</ul>"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }}
table {{ border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0 1.5em; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 0.25em 0.7em; text-align: right; }}
tr th:first-child {{ text-align: left; }}
tr.aggregate {{ background: #eef3fa; font-weight: 600; }}
.headline {{ font-size: 1.15em; }}
.settings {{ color: #666; font-size: 0.85em; }}
figure {{ margin: 0.5em 0 1.5em; }}
figure img {{ max-width: 100%; image-rendering: pixelated; }}
figcaption {{ font-size: 0.85em; color: #555; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(320px, 1fr)); gap: 1em; }}
.swatch {{ display: inline-block; width: 0.9em; height: 0.9em; margin: 0 0.3em 0 0.8em; vertical-align: middle; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""
