"""Which videos a folder holds, who is in each (MANIFEST.tsv beside the folder, or split.json by content) and
which side of the identity split each is on."""

import hashlib
import json
from importlib import resources
from pathlib import Path

from openvasa.tools.fit_basis import identity_of_clip

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
SPLIT_FILE = Path(str(resources.files("openvasa") / "assets" / "split.json"))


def list_videos(video_dir: Path) -> list[Path]:
    return sorted(p for p in Path(video_dir).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _manifest_identity(video: Path) -> str:
    """Identity from the MANIFEST.tsv beside the clip's folder (links followed), else the file stem."""
    real = video.resolve()
    return identity_of_clip(real.parent.parent / "MANIFEST.tsv", real.name)


def clip_identity(video: Path, sha256: str) -> tuple[str, str]:
    """(identity, 'train' | 'val') of a clip: split.json's clip list by content, else MANIFEST.tsv."""
    split = json.loads(SPLIT_FILE.read_text())
    for clip in split.get("clips", []):
        if clip["sha256"] == sha256:
            return clip["identity"], clip["split"]
    identity = _manifest_identity(video)
    return identity, "val" if identity in split["validation_identities"] else "train"


def trained_identities() -> set[str]:
    """The people the shipped models were trained on (split.json's training clips): everyone else is unseen."""
    return {clip["identity"] for clip in json.loads(SPLIT_FILE.read_text())["clips"] if clip["split"] == "train"}
