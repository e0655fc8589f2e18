"""report.md of a prep run: totals, a table of clips, and plots of pose, expression and blinks."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from openvasa.data.shards import HIGH_BAND_HZ
from openvasa.face.latent import (
    POSE_ANGLES,
)
from openvasa.io.media import write_atomic

REPORT_FRAMES = 200_000  # frames sampled for the report's histograms


def write_report(out_dir: Path, index: dict, wall_seconds: float) -> Path:
    """out_dir/report.md, with pose.png, expression.png and blinks.png: what the shards hold."""
    clips, shards = index["clips"], index["shards"]
    lines = ["# Motion data: prep report", ""] + _summary(index, wall_seconds)
    cut_reasons = Counter(cut["reason"] for c in clips for cut in c["cuts"])
    lines += ["", "## Cuts", "", "| reason | count |", "|---|---|"]
    lines += [f"| {reason} | {n} |" for reason, n in sorted(cut_reasons.items())] or ["| (none) | 0 |"]
    skipped = [c for c in clips if c["status"] != "ok"]
    if skipped:
        lines += ["", "Clips without shards:", ""] + [f"- {c['file']}: {c['reason']}" for c in skipped]
    if shards:
        pose, dynamics, mouth = _sample_frames(out_dir, shards)
        yaw, pitch, roll = np.degrees(pose[:, POSE_ANGLES]).T
        lines += ["", "## Pose and expression", "", "| | 5% | 50% | 95% |", "|---|---|---|---|"]
        for label, values in zip(
            ("yaw (deg)", "pitch (deg)", "roll (deg)", "mouth opening (eye distances)"),
            (yaw, pitch, roll, mouth),
            strict=True,
        ):
            lines.append(f"| {label} | " + " | ".join(f"{np.percentile(values, q):.3f}" for q in (5, 50, 95)) + " |")
        std = dynamics.std(0)
        lines += ["", f"Dynamics code std, components 1-{len(std)}: " + ", ".join(f"{v:.3f}" for v in std), ""]
        lines += ["![pose](pose.png)", "", "![expression](expression.png)", "", "![blinks](blinks.png)"]
        _plot_pose(out_dir / "pose.png", yaw, pitch, roll)
        _plot_expression(out_dir / "expression.png", std, mouth)
        _plot_blinks(out_dir / "blinks.png", [c for c in clips if c["status"] == "ok"])
    lines += ["", "## Clips", ""] + _clip_table(clips)
    path = out_dir / "report.md"
    write_atomic(path, ("\n".join(lines) + "\n").encode())
    return path


def _summary(index: dict, wall_seconds: float) -> list[str]:
    clips, shards = index["clips"], index["shards"]
    total_min = sum(c.get("seconds", 0.0) for c in clips) / 60
    usable_min = sum(s["seconds"] for s in shards) / 60
    dropped = [d for c in clips for d in c["dropped"]]
    lines = [
        f"Config `{index['config_hash']}` (basis `{index['basis']}`): {json.dumps(index['config'])}",
        "",
        "| | |",
        "|---|---|",
        f"| clips | {len(clips)} ({sum(c['status'] == 'ok' for c in clips)} with shards) |",
        f"| total minutes | {total_min:.2f} |",
        f"| usable minutes | {usable_min:.2f} ({100 * usable_min / max(total_min, 1e-9):.0f}%) |",
        f"| segments kept | {len(shards)} |",
        f"| segments dropped (too short) | {len(dropped)} ({sum(d['seconds'] for d in dropped):.1f} s) |",
        f"| prep time, sum over clips | {sum(c.get('prep_s', 0.0) for c in clips):.0f} s |",
        f"| this run | {wall_seconds:.0f} s wall |",
    ]
    for split in ("train", "val"):
        people = sorted({s["identity"] for s in shards if s["split"] == split})
        minutes = sum(s["seconds"] for s in shards if s["split"] == split) / 60
        lines.append(f"| {split} | {len(people)} identities, {minutes:.2f} min: {', '.join(people)} |")
    return lines


def _sample_frames(out_dir: Path, shards: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pose (N, 7), dynamics (N, K) and mouth opening (N,) of at most REPORT_FRAMES frames, evenly spread."""
    stride = max(1, sum(s["T"] for s in shards) // REPORT_FRAMES)
    parts = []
    for shard in shards:
        with np.load(out_dir / shard["file"]) as z:
            parts.append((z["pose"][::stride], z["dynamics"][::stride], z["mouth_opening"][::stride]))
    pose, dynamics, mouth = (np.concatenate(column) for column in zip(*parts, strict=True))
    return pose, dynamics, mouth


def _clip_table(clips: list[dict]) -> list[str]:
    lines = [
        f"Smoothing check: r = correlation of the stored (smoothed) and the unsmoothed mouth opening; band = their "
        f"power ratio above {HIGH_BAND_HZ:g} Hz.",
        "",
        "| clip | identity | split | fps | s | usable s | segments | cuts | blinks/min | r | band | prep s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in clips:
        cells = [c["file"], c["identity"], c["split"], f"{c.get('source_fps', 0):.2f}", f"{c.get('seconds', 0):.1f}"]
        if c["status"] == "ok":
            cells += [
                f"{c['usable_s']:.1f}",
                str(len(c["shards"])),
                str(len(c["cuts"])),
                f"{c['blinks_per_min']:.1f}",
                f"{c['mouth_r']:.3f}",
                f"{c['high_band_ratio']:.2f}",
            ]
        else:
            cells += ["0", "0", str(len(c["cuts"])), "", "", ""]
        lines.append("| " + " | ".join(cells + [f"{c['prep_s']:.0f}"]) + " |")
    return lines


def _plot_pose(path: Path, yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> None:
    fig = Figure(figsize=(10, 3))
    for ax, values, label in zip(fig.subplots(1, 3), (yaw, pitch, roll), ("yaw", "pitch", "roll"), strict=True):
        ax.hist(values, bins=60)
        ax.set_xlabel(f"{label} (degrees)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def _plot_expression(path: Path, std: np.ndarray, mouth: np.ndarray) -> None:
    fig = Figure(figsize=(10, 3))
    left, right = fig.subplots(1, 2)
    left.bar(np.arange(1, len(std) + 1), std)
    left.set_xlabel("dynamics component")
    left.set_ylabel("std")
    right.hist(mouth, bins=60)
    right.set_xlabel("mouth opening (eye distances)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def _plot_blinks(path: Path, clips: list[dict]) -> None:
    fig = Figure(figsize=(6, 0.25 * len(clips) + 1))
    ax = fig.subplots()
    ax.barh([Path(c["file"]).stem for c in clips], [c["blinks_per_min"] for c in clips])
    ax.set_xlabel("blinks per minute")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
