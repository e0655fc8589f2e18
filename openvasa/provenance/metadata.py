"""The provenance tag of an mp4: generator, version, model hash and the watermark's video id, in one standard tag.

The tag is the container's `comment` (an iTunes-style `©cmt` atom, shown by ffprobe, VLC, exiftool and most
players), one line of space-separated key=value fields after a fixed prefix:

    openvasa-provenance/1 generator=openvasa version=0.1.0 model=sha256:1f0e3dad99908345 model_version=1 video_id=9a3c0b12

It is plain text, not a signature: anyone can write or strip it. verify() reads it beside the watermark and says
whether the two agree.
"""

import hashlib
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import av

from openvasa.errors import OpenVasaError
from openvasa.provenance.watermark import Payload

TAG_KEY = "comment"
TAG_PREFIX = "openvasa-provenance/1"
MODEL_HASH_HEX = 16  # hex digits of the model file's SHA-256 kept in the tag


def package_version() -> str:
    try:
        return version("openvasa")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def model_hash(path: str | Path) -> str:
    """`sha256:` and the first MODEL_HASH_HEX hex digits of a model file's SHA-256."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return f"sha256:{digest[:MODEL_HASH_HEX]}"


def model_version(model: str) -> int:
    """The watermark's 8-bit model version: the first byte of the model's hash (model_hash), 0 for a model that has
    no file (the baseline motion, reenactment)."""
    digest = model.removeprefix("sha256:")
    return int(digest[:2], 16) if model.startswith("sha256:") and len(digest) >= 2 else 0


def provenance_tags(model: str, payload: Payload | None = None) -> dict[str, str]:
    """The tag for write_video(..., metadata=...): model is model_hash() of the motion model (or its name); the
    payload is the one the frames' watermark carries."""
    fields = {"generator": "openvasa", "version": package_version(), "model": model}
    if payload is not None:
        fields |= {"model_version": str(payload.model_version), "video_id": f"{payload.video_id:08x}"}
    for key, value in fields.items():
        if not value or any(c.isspace() or c == "=" for c in value):
            raise ValueError(f"provenance field {key}={value!r} must be non-empty, without spaces or '='")
    return {TAG_KEY: " ".join([TAG_PREFIX, *(f"{key}={value}" for key, value in fields.items())])}


def parse_tag(text: str) -> dict[str, str] | None:
    """The fields of a provenance tag, or None if `text` is not one."""
    words = text.split()
    if not words or words[0] != TAG_PREFIX:
        return None
    return dict(word.split("=", 1) for word in words[1:] if "=" in word)


def read_provenance(path: str | Path) -> dict[str, str] | None:
    """The provenance fields of a media file's container tag, or None if it has none (images have none)."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            text = container.metadata.get(TAG_KEY, "")
    except av.FFmpegError as e:
        raise OpenVasaError(f"{path}: cannot read, the file is corrupt or not a media file ({e.strerror})") from e
    return parse_tag(text)
