"""The evaluation report: per-frame plots (PNG, matplotlib) and one self-contained HTML page.

``write_report(result, frames, "out.html")`` writes ``out.html`` (numbers, plots and frame thumbnails,
every image embedded as a data URI, so the page is one file that opens anywhere) and the plots as
``out_plots/<measure>.png`` next to it. Needs matplotlib (``pip install 'scenescape[eval]'``).
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from scenescape.errors import InputError
from scenescape.evaluation.measures.evaluate import headline

# measure -> (title, [(per-frame key, label)])
PLOTS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "consistency_3d": ("3D consistency (reprojection into neighbours)",
                       [("colour_l1", "colour L1 (0-1)"), ("depth_abs_rel", "depth abs-rel")]),
    "photometric": ("Photometric consistency (optical flow, frame i-1 -> i)",
                    [("fb_error", "forward-backward error (px)"), ("epe", "EPE vs cameras + depth (px)")]),
    "camera": ("Camera control (poses from the frames vs cameras.json)",
               [("rotation_error_deg", "rotation error (deg)"), ("translation_error_deg", "translation dir. error (deg)")]),
    "style": ("Style and colour drift (vs frame 0)", [("colour_drift", "colour drift (Lab)"),
                                                      ("style_drift", "texture Gram drift")]),
    "seams": ("Seam visibility at inpainting borders", [("seam_ratio", "gradient ratio (1 = invisible)")]),
    "clip": ("CLIP", [("clip_score", "CLIP score (100 cos)"), ("clip_image_drift", "image drift (1 - cos)")]),
}


def _require_matplotlib() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise InputError("the report's plots need matplotlib: pip install 'scenescape[eval]' "
                         "(or leave out --report; --json needs nothing extra)") from e
    return plt


def plot_measure(result: dict[str, Any], name: str) -> bytes | None:
    """PNG bytes of one measure's per-frame curves (one panel per curve), or None if it was not measured."""
    plt = _require_matplotlib()
    m = result["measures"].get(name)
    if not m or name not in PLOTS:
        return None
    title, keys = PLOTS[name]
    series = [(k, lab, m["per_frame"].get(k)) for k, lab in keys]
    series = [(k, lab, v) for k, lab, v in series if v is not None and any(x is not None for x in v)]
    if not series:
        return None
    fig, axes = plt.subplots(1, len(series), figsize=(5.2 * len(series), 3.0), squeeze=False)
    for ax, (_, lab, v) in zip(axes[0], series):
        y = np.array([np.nan if x is None else float(x) for x in v])
        ax.plot(np.arange(len(y)), y, marker=".", lw=1.2)
        ax.set_xlabel("frame")
        ax.set_ylabel(lab)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


def _thumb_uri(image: np.ndarray, width: int = 160) -> str:
    import cv2

    img = np.clip(np.asarray(image, np.float32) * 255 + 0.5, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    small = cv2.resize(img, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode()


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def write_report(result: dict[str, Any], frames: np.ndarray, path: str | Path, thumbnails: int = 12) -> Path:
    """Write the HTML report (module docstring) and the PNG plots; returns the HTML path."""
    from scenescape.io import atomic_write_bytes, atomic_write_text

    out = Path(path)
    if out.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"report '{out}' must end in .html")
    _require_matplotlib()
    plot_dir = out.with_name(out.stem + "_plots")
    plots: list[tuple[str, str]] = []
    for name in PLOTS:
        png = plot_measure(result, name)
        if png is None:
            continue
        atomic_write_bytes(plot_dir / f"{name}.png", png)
        plots.append((PLOTS[name][0], "data:image/png;base64," + base64.b64encode(png).decode()))
    n = frames.shape[0]
    idx = sorted(set(np.linspace(0, n - 1, min(thumbnails, n)).round().astype(int).tolist()))
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in headline(result).items())
    details = []
    for name, m in result["measures"].items():
        cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in m["summary"].items())
        details.append(f"<h3>{html.escape(name)}</h3><table>{cells}</table>")
    skipped = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in result.get("skipped", {}).items())
    thumbs = "".join(f'<figure><img src="{_thumb_uri(frames[i])}" alt="frame {i}"><figcaption>{i}</figcaption></figure>'
                     for i in idx)
    figs = "".join(f'<h3>{html.escape(t)}</h3><img class="plot" src="{uri}" alt="{html.escape(t)}">' for t, uri in plots)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>scenescape evaluate: {html.escape(str(result.get('run')))}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }} td {{ border: 1px solid #ccc; padding: 2px 8px; }}
td:last-child {{ text-align: right; font-variant-numeric: tabular-nums; }}
figure {{ display: inline-block; margin: 4px; text-align: center; font-size: 80%; }}
img.plot {{ max-width: 100%; }}
</style></head><body>
<h1>scenescape evaluate</h1>
<p>run: <code>{html.escape(str(result.get('run')))}</code> ({html.escape(str(result.get('kind')))}),
{result.get('frames')} frames, {result['size'][0]}x{result['size'][1]} px;
prompt: <q>{html.escape(result.get('prompt') or '')}</q></p>
<h2>Summary</h2><table>{rows}</table>
{f'<p>Not measured:</p><ul>{skipped}</ul>' if skipped else ''}
<h2>Frames</h2><div>{thumbs}</div>
<h2>Per frame</h2>{figs}
<h2>All numbers</h2>{''.join(details)}
<p>Seconds per measure: {html.escape(str(result.get('seconds')))}</p>
</body></html>
"""
    atomic_write_text(out, page)
    return out
