"""What becomes images for the model besides photos: video frames (PyAV) and PDF pages (pypdfium2).

The limits below are here, free of imports, for the command line's help.
"""

DEFAULT_FPS = 1.0
# SmolVLM2's processor allows 64 frames. 16 (a frame a second of a phone clip) take about 23 s
# to read on 2 cores of an AVX2 CPU (1.4 s a frame, ONNX Runtime's 8-bit encoder), nearly all
# of it while the question is typed: the answer then starts 0.1 s after Enter.
DEFAULT_MAX_FRAMES = 16
MAX_FRAMES = 256
# Above this many pages SmolChat asks which to send: a whole report is rarely meant.
ASK_ABOVE_PAGES = 8
