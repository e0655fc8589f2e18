"""Audio-driven generation end to end, and bad inputs failing clearly without writing a file."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from openvasa.cli import main
from openvasa.errors import OpenVasaError
from openvasa.face import landmarks as lm
from openvasa.face.track import track_frames
from openvasa.io.media import probe_duration, read_video
from openvasa.pipeline import generate, render_latents
from openvasa.provenance.verify import verify
from openvasa.provenance.watermark import detect


def test_generate_writes_a_talking_video_of_the_audio_length(spoken, tmp_path, astronaut):
    out = generate(astronaut, spoken, tmp_path / "talk.mp4")
    info = sf.info(str(spoken))
    video_s, audio_s = probe_duration(out)
    assert abs(video_s - info.duration) <= 1 / 25 + 1e-6
    assert abs(audio_s - video_s) < 0.07
    clip = read_video(out)
    assert clip.frames[0].shape == (512, 512, 3) and clip.fps == 25
    mouth = lm.mouth_opening(track_frames(clip.frames, keep_frames=False).landmarks)
    assert mouth.max() - mouth.min() > 0.05, "the mouth does not move"
    found = verify(out)  # marked as generated: the watermark in the frames, the tag in the mp4, the two agree
    assert found.found and found.tag_matches and found.tag["generator"] == "openvasa"


def test_identity_is_kept(spoken, astronaut):
    identity = pytest.importorskip("openvasa.eval.identity")
    frames = generate(astronaut, spoken)
    assert detect(frames).found  # the frames the Python API returns are marked too
    distance = identity.identity_distance(astronaut, frames[::10])
    print(f"face-embedding distance portrait vs frames: {distance:.3f}")
    assert distance < 0.45  # same-person threshold is 0.6


def test_bad_inputs_fail_clearly_and_write_nothing(tmp_path, astronaut, spoken):
    out = tmp_path / "out.mp4"
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    corrupt = tmp_path / "corrupt.mp3"
    corrupt.write_bytes(b"\x00garbage" * 100)
    blank = np.full((300, 300, 3), 127, np.uint8)
    cases = [(astronaut, silent, "silent"), (astronaut, corrupt, "corrupt|decode"), (blank, spoken, "no face")]
    for image, audio, message in cases:
        with pytest.raises(OpenVasaError, match=message):
            generate(image, audio, out)
        assert list(tmp_path.glob("*.mp4")) == []


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    code = main(
        ["generate", "--image", str(tmp_path / "missing.png"), "--audio", "x.wav", "-o", str(tmp_path / "o.mp4")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error:") and "Traceback" not in err
    assert not (tmp_path / "o.mp4").exists()


def test_cli_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    for option in ("--gaze", "--distance", "--emotion", "--seed", "--fps", "--motion-scale", "--face-index"):
        assert option in text


def test_cli_help_loads_no_heavy_library():
    """`openvasa --help` answers at once: torch, OpenCV, MediaPipe, PyAV and CTranslate2 load only for real work."""
    probe = (
        "import sys, contextlib, io\n"
        "from openvasa.cli import main\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['generate', '--help'])\n"
        "print(sorted(m for m in ('torch', 'cv2', 'mediapipe', 'av', 'ctranslate2', 'scipy') if m in sys.modules))\n"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
    # The offline pipelines import torch only with the motion model: generate overlaps that import with Whisper.
    probe = "import sys, openvasa.pipeline\nprint('torch' in sys.modules)\n"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "False"


def test_threaded_rendering_keeps_order_errors_and_stops(astronaut_portrait, codec, monkeypatch):
    """Frames drawn on two threads come out in order, the same as on one; a drawing error reaches the consumer
    (the writer, which then leaves no file); a consumer that stops early stops the drawing."""
    latent = astronaut_portrait.identity.reference[np.zeros(12, int)].copy()
    latent.pose[:, 0] += np.linspace(-0.1, 0.1, 12)
    serial = list(render_latents(astronaut_portrait, latent, codec, threads=1))
    threaded = list(render_latents(astronaut_portrait, latent, codec, threads=2))
    assert all(np.array_equal(a, b) for a, b in zip(serial, threaded, strict=True))
    drawn = []
    render = astronaut_portrait.renderer.render

    def failing(points):
        drawn.append(1)
        if len(drawn) == 5:
            raise OpenVasaError("render failed")
        return render(points)

    monkeypatch.setattr(astronaut_portrait.renderer, "render", failing)
    with pytest.raises(OpenVasaError, match="render failed"):
        list(render_latents(astronaut_portrait, latent, codec))
    drawn.clear()
    long = astronaut_portrait.identity.reference[np.zeros(200, int)]
    frames = render_latents(astronaut_portrait, long, codec)
    next(frames)
    frames.close()
    assert len(drawn) < 20


def test_controls_are_read_from_text_in_one_place():
    """The CLI's flags and the server's fields are read by MotionControls.from_text: every control by its name,
    empty fields keep the defaults, and an unreadable value names its field."""
    from openvasa.cli import build_parser
    from openvasa.motion.controls import CONTROL_HELP, MotionControls

    controls = MotionControls.from_text(
        {"gaze": "10,-5", "distance": "1.2", "emotion": "happy", "emotion_strength": "0.5", "motion_scale": ""}
    )
    assert controls == MotionControls(gaze=(10.0, -5.0), distance=1.2, emotion="happy", emotion_strength=0.5)
    assert MotionControls.from_text({}) == MotionControls()
    for name, bad in (("gaze", "left"), ("distance", "far"), ("motion_scale", "-1")):
        with pytest.raises(OpenVasaError, match=name):
            MotionControls.from_text({name: bad})
    flags = build_parser().parse_args(
        ["generate", "--image", "a", "--audio", "b", "-o", "c", "--emotion-strength", "2"]
    )
    assert set(CONTROL_HELP) <= set(vars(flags)) and MotionControls.from_text(vars(flags)).emotion_strength == 2.0


def test_cli_reads_negative_values_as_typed():
    """`--gaze -20,0` as a user types it (argparse alone takes "-20,0" for an unknown option), negative numbers
    in any option, `--emotion happy:0.5`; what follows "--" and other options keep their meaning."""
    from openvasa.cli import build_parser, join_negative_values
    from openvasa.motion.controls import MotionControls

    base = ["generate", "--image", "a", "--audio", "b", "-o", "c"]
    flags = build_parser().parse_args([*base, "--gaze", "-20,0", "--emotion", "happy:0.5", "--cfg-audio", "-.5"])
    assert flags.gaze == "-20,0" and flags.cfg_audio == -0.5
    controls = MotionControls.from_text(vars(flags))
    assert controls.gaze == (-20.0, 0.0) and controls.emotion == "happy" and controls.emotion_strength == 0.5
    assert build_parser().parse_args([*base, "--gaze=-5,-10.5", "--distance", "1.2"]).gaze == "-5,-10.5"
    assert build_parser().parse_args([*base, "--gaze", "10,-5"]).gaze == "10,-5"
    assert join_negative_values(["--gaze", "-1e-3,2", "-o", "-x", "--", "--gaze", "-1"]) == [
        "--gaze=-1e-3,2", "-o", "-x", "--", "--gaze", "-1",
    ]  # fmt: skip
    with pytest.raises(SystemExit):  # a flag without a value does not swallow a number
        build_parser().parse_args([*base, "--no-watermark", "-3"])
