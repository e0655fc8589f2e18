"""An invisible watermark in every frame: a 48-bit payload spread over a tiled, band-limited luma pattern.

Embedding. The payload (generator, model version, random video id) gets a CRC-16 and a rate-1/2 convolutional
code: 140 coded bits. Each coded bit owns a few random spatial frequencies (0.08-0.2 cycles per pixel) of a
TILE x TILE tile, whose sign it flips; a known sync signal owns some more. The tile is repeated over the frame and
added to R, G and B alike (luma only, so grey-scale keeps it), scaled by a strength map made from the first frame:
weak wherever the face goes (SSIM there is what a viewer notices), stronger in texture and background, within a PSNR
budget. So the pattern is built once per video (again only when a live face moves past where it was faint), and a
frame costs one saturating add and one subtract.

Detection. Each frame's luma, high-passed and clipped (edges would dominate), is folded onto the tile (summed
modulo TILE), over frames too; its 2-D FFT then holds the pattern's frequencies, whitened by the content's power
at each radius. The tile's offset (after a crop) is the peak of the circular correlation with the sync signal;
its z-score against all TILE² offsets is the confidence. The coded bits are read at that offset and decoded by
Viterbi; a payload counts only when the sync peak is significant *and* its CRC matches. A rescaled copy is folded
at a few scales: 1, 0.5, what the frame size implies for a resized 512² frame, and the period the mark itself shows
in the autocorrelation of the first frames (so a crop stretched back, or a copy inside a larger canvas, is read).

Frequencies are disjoint between bits, so linear filtering (blur, resize, compression, to a first order) keeps the
bits independent. The key is public: this marks honest output; it is no proof against a forger.
"""

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field

import cv2
import numpy as np

TILE = 128  # pixels: the pattern's period, at the 512² frame size
FRAME_SIZE = 512  # the generator's frame side: the reference for scale candidates
BAND = (0.08, 0.2)  # cycles per pixel: measured best against H.264, JPEG and 0.5x (lower: more image content)
SYNC_SHARE = 0.2  # share of the band's frequencies that carry the sync signal
# Strength follows the texture of the first frame. SSIM (7x7 windows, C2 = (0.03 * 255)^2) loses about
# c = k a^2 / (2 var + C2) where a pattern of RMS a meets content of variance var (k < 1: the share of the pattern's
# variance inside a window), so a = sqrt((2 var + C2) c / k): the face gets a small cost, the background a larger one.
FACE_COST = 0.004  # c / k in the face: measured face SSIM drops of 0.001-0.003
BACKGROUND_COST = 0.05
SSIM_C2 = (0.03 * 255) ** 2
AMPLITUDE = (0.5, 5.0)  # RMS of the added luma, 0-255 levels: the weakest and strongest place
RMS_BUDGET = 2.3  # the whole frame's RMS at most: PSNR 40.9 dB (40.8 at worst measured, after rounding)
FACE_MARGIN = 0.15  # each face's hull grown by this share of its size: no landmark lies on the hairline or the ears
MOTION = 12  # pixels: in the face a place is as weak as the flattest place this near (eyes and mouth move)
# A live face past the faint region widens it by its hull grown this much: a head moving on rebuilds the pattern
# (about 10 ms) now and then rather than every frame.
REACH = 2 * FACE_MARGIN
KEY = b"openvasa-watermark-v1"  # public: anyone can read (and, with the code, forge or remove) the mark

GENERATOR_OPENVASA = 1
PAYLOAD_BITS = 48  # generator 8 + model version 8 + video id 32
CRC_BITS = 16
CODE_POLYS = (0o133, 0o171)  # rate-1/2, constraint length 7: the NASA/802.11 code
CODE_MEMORY = 6
MESSAGE_BITS = PAYLOAD_BITS + CRC_BITS
CODED_BITS = 2 * (MESSAGE_BITS + CODE_MEMORY)

HIGHPASS_SIGMA = 3.0  # pixels: removes what folding would leak from strong low frequencies of a partial tile
CLIP = 3.0  # residual clipped at CLIP x its robust spread: an edge must not outweigh the texture around it
# Sync z-score over TILE² offsets and the scales tried. On 11,247 frames of real video, one at a time, noise reached
# 5.8 at most (0.4% above 5); a marked frame scores 9.5-19. Above it, the CRC must also hold (1 in 65,536 by chance).
MIN_SCORE = 6.0
PERIOD_FRAMES = 8  # the first frames, summed, tell the scale
PERIOD_MIN_Z = 4.5  # a period peak this far above the autocorrelation's spread adds a scale to try


@dataclass(frozen=True)
class Payload:
    """What every frame carries: who made it (8 bits), with which model (8 bits), and a random video id (32 bits)."""

    generator: int
    model_version: int
    video_id: int

    def __post_init__(self) -> None:
        for name, bits in (("generator", 8), ("model_version", 8), ("video_id", 32)):
            value = getattr(self, name)
            if not 0 <= value < 1 << bits:
                raise ValueError(f"{name} must fit in {bits} bits, got {value}")

    def to_bits(self) -> np.ndarray:
        """(PAYLOAD_BITS,) uint8 0/1, most significant first."""
        value = (self.generator << 40) | (self.model_version << 32) | self.video_id
        return _int_bits(value, PAYLOAD_BITS)

    @classmethod
    def from_bits(cls, bits: np.ndarray) -> "Payload":
        value = _bits_int(bits)
        return cls(value >> 40, (value >> 32) & 0xFF, value & 0xFFFFFFFF)


@dataclass
class Detection:
    """What detect() found. score: z-score of the sync peak among all offsets (noise: up to about 6; a mark: 10-19,
    19 being the most the sync signal's size allows). reliability: share of the coded bits read as the decoded
    codeword has them (1: clean; noise: about 0.8, Viterbi picks the codeword nearest to it)."""

    found: bool
    payload: Payload | None
    score: float
    scale: tuple[float, float]  # (sy, sx): the frame's size relative to the marked one
    offset: tuple[int, int]  # (y, x): where the tile's first pixel lies in the (rescaled) frame, modulo TILE
    reliability: float
    frames: int
    soft: np.ndarray = field(repr=False)  # (CODED_BITS,) the coded bits as read, positive for 1, unit noise


def _int_bits(value: int, n: int) -> np.ndarray:
    return np.array([(value >> (n - 1 - i)) & 1 for i in range(n)], np.uint8)


def _bits_int(bits: np.ndarray) -> int:
    return int("".join(str(int(b)) for b in bits), 2)


def crc16(bits: np.ndarray) -> np.ndarray:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) of a bit string, as 16 bits."""
    crc = 0xFFFF
    for bit in bits:
        feedback = ((crc >> 15) & 1) ^ int(bit)
        crc = (crc << 1) & 0xFFFF
        if feedback:
            crc ^= 0x1021
    return _int_bits(crc, CRC_BITS)


def _parity(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    for shift in (4, 2, 1):
        x ^= x >> shift
    return x & 1


# The code's trellis. state: the last CODE_MEMORY input bits, the newest on top; register: state + the new bit.
_STATES = np.arange(1 << CODE_MEMORY)
_REGISTER = _STATES[:, None] | (np.array([0, 1]) << CODE_MEMORY)  # (64 states, 2 inputs)
_NEXT = _REGISTER >> 1  # (64, 2) next state
_OUT = np.stack([_parity(_REGISTER & g) for g in CODE_POLYS], axis=-1)  # (64, 2, 2 outputs) 0/1
# Each state is reached from two states (differing in their oldest bit), both by the input bit now on its top.
_PREV = ((_STATES[:, None] << 1) | np.array([0, 1])) & _STATES[-1]  # (64, 2)
_INPUT = _STATES >> (CODE_MEMORY - 1)  # (64,)


def conv_encode(bits: np.ndarray) -> np.ndarray:
    """(n,) 0/1 -> (2 (n + CODE_MEMORY),) 0/1, zero-terminated."""
    state = 0
    out = []
    for bit in np.concatenate([bits, np.zeros(CODE_MEMORY, np.uint8)]):
        out.extend(_OUT[state, bit])
        state = _NEXT[state, bit]
    return np.array(out, np.uint8)


def viterbi_decode(soft: np.ndarray) -> np.ndarray:
    """Soft values (2 m,), positive for bit 1, -> the (m - CODE_MEMORY,) message of the most correlated codeword."""
    steps = soft.reshape(-1, 2)
    signs = 2.0 * _OUT - 1.0  # (64, 2, 2)
    metric = np.full(_STATES.size, -np.inf)
    metric[0] = 0.0  # the encoder starts at state 0
    choices = []  # per step: (64,) which of the two predecessors each state was best reached from
    for pair in steps:
        branch = signs @ pair  # (64 states, 2 inputs): correlation of each transition's output with the soft pair
        candidates = metric[_PREV] + branch[_PREV, _INPUT[:, None]]  # (64 next states, 2 predecessors)
        choice = np.argmax(candidates, axis=1)
        metric = candidates[_STATES, choice]
        choices.append(choice)
    state = 0  # zero-terminated: the encoder ends at state 0
    decoded = []
    for choice in reversed(choices):
        decoded.append(_INPUT[state])
        state = _PREV[state, choice[state]]
    return np.array(decoded[::-1][: steps.shape[0] - CODE_MEMORY], np.uint8)


@dataclass(frozen=True)
class _Layout:
    """Which frequency of the tile carries what. bins: (n, 2) (ky, kx) in the upper half-plane; phase: (n,)
    radians; owner: (n,) -1 for sync, else the coded bit's index."""

    bins: np.ndarray
    phase: np.ndarray
    owner: np.ndarray

    def spectrum(self, coded_signs: np.ndarray, sync: bool) -> np.ndarray:
        """(TILE, TILE) complex half-spectrum of sync (if `sync`) and coded bits with signs `coded_signs` (+-1, 0)."""
        amplitude = np.where(self.owner < 0, 1.0 if sync else 0.0, coded_signs[np.maximum(self.owner, 0)])
        spectrum = np.zeros((TILE, TILE), np.complex128)
        spectrum[self.bins[:, 0] % TILE, self.bins[:, 1] % TILE] = amplitude * np.exp(1j * self.phase)
        return spectrum


def _layout() -> _Layout:
    ky, kx = np.meshgrid(np.arange(-TILE // 2, TILE // 2), np.arange(-TILE // 2, TILE // 2), indexing="ij")
    radius = np.hypot(ky, kx) / TILE
    upper = (ky > 0) | ((ky == 0) & (kx > 0))  # one of each conjugate pair
    chosen = upper & (radius >= BAND[0]) & (radius <= BAND[1])
    bins = np.stack([ky[chosen], kx[chosen]], axis=1)
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(KEY).digest()[:8], "little"))
    bins = bins[rng.permutation(len(bins))]
    n_sync = round(SYNC_SHARE * len(bins))
    owner = np.concatenate([np.full(n_sync, -1), np.arange(len(bins) - n_sync) % CODED_BITS])
    return _Layout(bins, rng.uniform(0, 2 * np.pi, len(bins)), owner)


LAYOUT = _layout()


def _tile_from_spectrum(half: np.ndarray) -> np.ndarray:
    """Real (TILE, TILE) pattern of a half-spectrum: its conjugate half added implicitly."""
    return 2.0 * np.real(np.fft.ifft2(half)) * TILE * TILE


def _unit_tile_scale() -> float:
    """Factor that gives the full tile (sync + all coded bits, any signs) an RMS of 1."""
    tile = _tile_from_spectrum(LAYOUT.spectrum(np.ones(CODED_BITS), sync=True))
    return 1.0 / float(np.sqrt(np.mean(tile**2)))


_UNIT = _unit_tile_scale()


def codeword(payload: Payload) -> np.ndarray:
    """(CODED_BITS,) 0/1: payload + CRC, convolutionally coded."""
    bits = payload.to_bits()
    return conv_encode(np.concatenate([bits, crc16(bits)]))


class Watermark:
    """One video's mark: the payload's tile, and per frame size the strength map and the pattern ready to add."""

    def __init__(self, payload: Payload, face: np.ndarray | None) -> None:
        self.payload = payload
        self.face = face
        signs = 2.0 * codeword(payload) - 1.0
        self.tile = (_tile_from_spectrum(LAYOUT.spectrum(signs, sync=True)) * _UNIT).astype(np.float32)
        self._strengths: dict[tuple[int, int], Strength] = {}
        self._patterns: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def new(cls, model_version: int, face: np.ndarray | None, generator: int = GENERATOR_OPENVASA) -> "Watermark":
        """A mark with a fresh random 32-bit video id. face: the landmarks (x, y) in frame pixels of the face in the
        frames, where the mark is kept faint: (T, N, 2+) for each frame of a clip made ahead, or (N, 2+) for the
        first (a live stream: `apply` is then given each frame's); None for frames without a face."""
        return cls(Payload(generator, model_version, secrets.randbits(32)), face)

    def _pattern(self, strength: "Strength") -> tuple[np.ndarray, np.ndarray]:
        """(H, W, 3) uint8 positive and negative parts of the rounded pattern, tiled from the top-left corner and
        scaled by the strength map."""
        height, width = strength.region.shape
        reps = (-(-height // TILE), -(-width // TILE))
        delta = np.rint(np.tile(self.tile, reps)[:height, :width] * strength.amplitude()).astype(np.int16)
        plus = np.repeat(np.clip(delta, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        minus = np.repeat(np.clip(-delta, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
        return plus, minus

    def apply(self, frame: np.ndarray, face: np.ndarray | None = None) -> np.ndarray:
        """Marked copy of an RGB uint8 (H, W, 3) frame: the same luma delta on R, G and B, saturated at 0 and 255.
        face: this frame's landmarks (N, 2+), for a face not known ahead (a live stream): where it reaches past the
        faint region, the region widens before the frame is marked."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"frames must be uint8 (H, W, 3) RGB, got {frame.dtype} {frame.shape}")
        key = frame.shape[:2]
        if key not in self._strengths:
            self._strengths[key] = Strength.of(frame, self.face)
            self._patterns[key] = self._pattern(self._strengths[key])
        if face is not None and self._strengths[key].widen(face):
            self._patterns[key] = self._pattern(self._strengths[key])
        plus, minus = self._patterns[key]
        return cv2.subtract(cv2.add(frame, plus), minus)


def _faces(face: np.ndarray | None) -> np.ndarray:
    """Landmarks (N, 2+) or (T, N, 2+) -> (T, N, 2) float32; (0, 0, 2) for None."""
    if face is None:
        return np.zeros((0, 0, 2), np.float32)
    points = np.asarray(face, np.float32)
    return points[..., :2].reshape(-1, points.shape[-2], 2)


def _fill_hull(mask: np.ndarray, face: np.ndarray, margin: float) -> None:
    """Set to 1 (in place) the convex hull of a face's landmarks (N, 2), grown by `margin` of its size."""
    centre = face.mean(axis=0)
    grown = centre + (face - centre) * (1 + margin)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.rint(grown).astype(np.int32)), 1)


@dataclass
class Strength:
    """The mark's RMS over a frame size, from the texture of its first frame. face, background: (H, W) float32 the
    RMS a place gets inside and outside the region the face goes to; region: (H, W) uint8, 1 there."""

    face: np.ndarray
    background: np.ndarray
    region: np.ndarray

    @classmethod
    def of(cls, frame: np.ndarray, face: np.ndarray | None) -> "Strength":
        """For an RGB uint8 frame and the landmarks of its face (see Watermark.new), the first frame's first."""
        height, width = frame.shape[:2]
        luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float32)
        mean = cv2.blur(luma, (7, 7))
        variance = np.maximum(cv2.blur(luma * luma, (7, 7)) - mean * mean, 0)
        faces = _faces(face)
        first, region = np.zeros((height, width), np.uint8), np.zeros((height, width), np.uint8)
        if len(faces):
            _fill_hull(first, faces[0], FACE_MARGIN)
        for points in faces:
            _fill_hull(region, points, FACE_MARGIN)
        # Where the face is now, its own texture; where it goes later, its flattest skin may come (what is there now,
        # hair or background, showed through the forehead as a speckle as strong as theirs).
        face_texture = np.where(first > 0, variance, 0)
        kernel = np.ones((2 * MOTION + 1, 2 * MOTION + 1), np.uint8)
        face_amplitude = cv2.erode(np.sqrt(FACE_COST * (2 * face_texture + SSIM_C2)), kernel)
        background_amplitude = np.sqrt(BACKGROUND_COST * (2 * variance + SSIM_C2))
        return cls(face_amplitude, background_amplitude, region)

    def widen(self, face: np.ndarray) -> bool:
        """Take a face's landmarks (N, 2+) into the region if it reaches past it; whether it did."""
        points = _faces(face)[0]
        hull = np.zeros_like(self.region)
        _fill_hull(hull, points, FACE_MARGIN)
        if not (hull > self.region).any():
            return False
        _fill_hull(self.region, points, REACH)
        return True

    def amplitude(self) -> np.ndarray:
        """(H, W) float32 RMS of the mark: faint where the face goes, more so on flat skin, stronger in texture and in
        the background, smoothed, clipped to AMPLITUDE and scaled down to the RMS_BUDGET."""
        amplitude = np.where(self.region > 0, self.face, self.background)
        amplitude = np.clip(cv2.GaussianBlur(amplitude, (0, 0), 4.0), *AMPLITUDE)
        rms = float(np.sqrt(np.mean(amplitude**2)))
        return amplitude * min(1.0, RMS_BUDGET / rms)


def _residual(frame: np.ndarray) -> np.ndarray:
    """(H, W) float32: the luma's high frequencies, clipped where edges or noise stand out."""
    if frame.ndim == 3:
        luma = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY if frame.shape[2] == 3 else cv2.COLOR_RGBA2GRAY)
    else:
        luma = frame
    luma = luma.astype(np.float32)
    residual = luma - cv2.GaussianBlur(luma, (0, 0), HIGHPASS_SIGMA, borderType=cv2.BORDER_REFLECT)
    # Robust sigma from every 16th pixel (the median of all costs more than the rest); +0.5: flat frames.
    spread = 1.4826 * float(np.median(np.abs(residual[::4, ::4]))) + 0.5
    return np.clip(residual, -CLIP * spread, CLIP * spread)


def _fold(residual: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """(TILE, TILE) float64: the residual resampled by 1 / (sy, sx) (back to the tile's size), summed modulo TILE."""
    if scale != (1.0, 1.0):
        height, width = residual.shape
        size = (max(1, round(width / scale[1])), max(1, round(height / scale[0])))
        residual = cv2.resize(residual, size, interpolation=cv2.INTER_LINEAR)
    height, width = residual.shape
    padded = np.zeros((-(-height // TILE) * TILE, -(-width // TILE) * TILE), np.float32)
    padded[:height, :width] = residual
    tiles = padded.reshape(padded.shape[0] // TILE, TILE, padded.shape[1] // TILE, TILE)
    return tiles.sum(axis=(0, 2), dtype=np.float64)


def _peak_lag(z: np.ndarray, low: int) -> float | None:
    """Sub-pixel lag of the highest point of a z-scored autocorrelation starting at lag `low`, if significant."""
    k = int(np.argmax(z))
    if z[k] < PERIOD_MIN_Z or not 0 < k < z.size - 1:
        return None
    before, peak, after = z[k - 1 : k + 2]
    return low + k + 0.5 * (before - after) / (before - 2 * peak + after)  # the parabola's vertex


def _periods(residual: np.ndarray) -> list[tuple[float, float]]:
    """(sy, sx) guesses of the mark's period over TILE along each axis, from the autocorrelation of the spectrally
    whitened residual, in which a periodic mark stands out as narrow peaks and image content does not: each axis
    on its own (a crop rescaled to another aspect) and both together (a uniform rescale)."""
    power = np.abs(np.fft.rfft2(residual)) ** 2  # (H, W // 2 + 1)
    white = power / (cv2.GaussianBlur(power.astype(np.float32), (0, 0), 2.0) + 1e-6 * power.mean() + 1e-30)
    counted = np.full(white.shape[1], 2.0)  # a real signal's half spectrum: each column stands for two...
    counted[0] = 1.0  # ...but the zero frequency
    if residual.shape[1] % 2 == 0:
        counted[-1] = 1.0  # and the Nyquist one
    # Autocorrelation along one axis at zero lag along the other: the 1-D inverse FFT of the power summed over
    # the other axis.
    rows = (np.fft.ifft(white @ counted).real, np.fft.irfft(white.sum(axis=0), residual.shape[1]))
    low, high = int(np.ceil(0.3 * TILE)), min(3 * TILE, *(row.size // 2 for row in rows))
    if high - low < 8:
        return []
    profiles = []
    for row in rows:
        lags = row[low:high]
        median = np.median(lags)
        profiles.append((lags - median) / (1.4826 * np.median(np.abs(lags - median)) + 1e-30))
    sy, sx = (_peak_lag(z, low) for z in profiles)
    both = _peak_lag((profiles[0] + profiles[1]) / np.sqrt(2), low)
    guesses = [(sy, sx)] if sy is not None and sx is not None else []
    guesses += [(lag, lag) for lag in (both, sy, sx) if lag is not None]
    return [(float(gy) / TILE, float(gx) / TILE) for gy, gx in guesses]


def scale_candidates(height: int, width: int, periods: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(sy, sx) at which a frame may hold the tile: as made, halved, a whole 512² frame resized, the periods."""
    candidates: list[tuple[float, float]] = []
    for scale in [(1.0, 1.0), (0.5, 0.5), (height / FRAME_SIZE,) * 2, (width / FRAME_SIZE,) * 2, *periods]:
        if not all(0.3 <= s <= 3.0 for s in scale):
            continue
        if all(max(abs(s / c - 1) for s, c in zip(scale, other, strict=True)) > 0.004 for other in candidates):
            candidates.append(scale)
    return candidates


def _radial_power(spectrum: np.ndarray) -> np.ndarray:
    """Per layout bin: the mean power of the folded spectrum over the band's bins at about the same radius."""
    radius = np.hypot(LAYOUT.bins[:, 0], LAYOUT.bins[:, 1])
    ring = np.floor(radius / 2).astype(int)  # rings two frequency steps wide: about 20-60 bins each
    power = np.abs(spectrum[LAYOUT.bins[:, 0] % TILE, LAYOUT.bins[:, 1] % TILE]) ** 2
    mean = np.bincount(ring, power) / np.maximum(np.bincount(ring), 1)
    return mean[ring] + 1e-12


def _read(folded: np.ndarray) -> tuple[float, tuple[int, int], np.ndarray]:
    """Sync z-score, tile offset (y, x) and soft coded bits (CODED_BITS,), about unit variance on noise."""
    spectrum = np.fft.fft2(folded)
    values = spectrum[LAYOUT.bins[:, 0] % TILE, LAYOUT.bins[:, 1] % TILE]
    weight = 1.0 / _radial_power(spectrum)  # whitening: each frequency counts by its signal-to-content ratio
    reference = np.exp(1j * LAYOUT.phase)
    sync = LAYOUT.owner < 0
    # Circular correlation of the folded tile with the sync signal, at every offset, in one inverse FFT.
    cross = np.zeros((TILE, TILE), np.complex128)
    cross[LAYOUT.bins[sync, 0] % TILE, LAYOUT.bins[sync, 1] % TILE] = (
        values[sync] * np.conj(reference[sync]) * weight[sync]
    )
    correlation = np.real(np.fft.ifft2(cross))
    peak = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    score = float((correlation[peak] - correlation.mean()) / (correlation.std() + 1e-30))
    # A pattern shifted by (dy, dx) has its frequency k multiplied by exp(-2 pi i k.d / TILE): undo it.
    dy, dx = (int(p) for p in peak)
    shift = np.exp(2j * np.pi * (LAYOUT.bins[:, 0] * dy + LAYOUT.bins[:, 1] * dx) / TILE)
    aligned = values * shift * np.conj(reference)
    contribution = np.real(aligned) * weight  # matched filter of each frequency
    coded = ~sync
    soft = np.bincount(LAYOUT.owner[coded], contribution[coded], CODED_BITS)
    # Noise of power p at a frequency gives its real part a variance p / 2, so the sum's variance is sum(weight) / 2.
    spread = np.sqrt(np.bincount(LAYOUT.owner[coded], weight[coded], CODED_BITS) / 2)
    return score, (dy, dx), soft / (spread + 1e-30)


def detect(frames: Iterable[np.ndarray]) -> Detection:
    """Look for the mark in RGB (H, W, 3) or grey (H, W) uint8 frames of one video (or a single image), summed.
    The first PERIOD_FRAMES frames also tell the scale (see _periods)."""
    first: list[np.ndarray] = []  # residuals of the first frames, until the scales to fold at are known
    folded: dict[tuple[float, float], np.ndarray] = {}
    n = 0
    for frame in frames:
        residual = _residual(frame)
        if n and residual.shape != (first[0] if first else residual).shape:
            raise ValueError(f"frame {n} is {frame.shape[:2]}, the first was {first[0].shape}")
        n += 1
        if folded:
            for scale in folded:
                folded[scale] += _fold(residual, scale)
            continue
        first.append(residual)
        if len(first) == PERIOD_FRAMES:
            folded = _fold_first(first)
    if not folded and first:
        folded = _fold_first(first)
    best = Detection(False, None, 0.0, (1.0, 1.0), (0, 0), 0.5, n, np.zeros(CODED_BITS))
    for scale, tile in folded.items():
        score, offset, soft = _read(tile)
        message = viterbi_decode(soft)
        bits, check = message[:PAYLOAD_BITS], message[PAYLOAD_BITS:]
        reliability = float(np.mean((soft > 0) == conv_encode(message).astype(bool)))
        crc_ok = bool(np.array_equal(crc16(bits), check))
        found = crc_ok and score >= MIN_SCORE
        candidate = Detection(
            found, Payload.from_bits(bits) if found else None, score, scale, offset, reliability, n, soft
        )
        if (candidate.found, candidate.score) > (best.found, best.score):
            best = candidate
    return best


def _fold_first(residuals: list[np.ndarray]) -> dict[tuple[float, float], np.ndarray]:
    """Scale candidates from the first residuals, and those residuals folded at each."""
    height, width = residuals[0].shape
    scales = scale_candidates(height, width, _periods(np.sum(residuals, axis=0)))
    return {scale: np.sum([_fold(r, scale) for r in residuals], axis=0) for scale in scales}
