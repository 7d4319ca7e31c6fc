"""Reading images: which encoder runs SmolVLM's vision tower, in which precision, on how many threads.

libmtmd's own encoder always works. On CPUs, OpenVINO's (an optional extra) is faster, and
ggml's is faster on BF16 weights where the CPU has BF16 instructions; ``tuning`` measures
this machine once and picks.
"""
