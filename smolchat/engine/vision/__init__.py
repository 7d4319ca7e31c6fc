"""Reading images: which encoder runs SmolVLM's vision tower, in which precision, on how many threads.

libmtmd's own encoder always works. On CPUs, OpenVINO's (an optional extra) is faster, and
ggml's is faster on BF16 weights where the CPU has BF16 instructions. ``plan`` holds the
choice the engine runs; ``smolchat.calibrate`` measures this machine once to make it.
"""
