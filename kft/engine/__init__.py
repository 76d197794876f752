"""kft's own decode engine for the Llama family and Qwen2: the model's weights read by reference (``weights``), a
forward with a static KV cache for N rows that each run with their own adapter or none (``engine``), the decode
step captured as a CUDA graph behind a guard (``graphs``), and per-row token choice on the device (``sampling``).
It runs neither Unsloth's nor PEFT's nor transformers' forward while decoding.

May import: kft.system.
"""
