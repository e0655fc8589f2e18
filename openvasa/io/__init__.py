"""Reading and writing audio, video and image files."""
