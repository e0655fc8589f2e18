"""Research tools: fitting the face basis and the baseline's mouth model, training and calibrating the motion model.
They read real videos and prep shards and write the shipped assets; the runtime (face, audio, motion, render,
stream, pipeline) never imports them, nor `openvasa.data` or `openvasa.eval` (tests/test_architecture.py)."""
