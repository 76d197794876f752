"""Answers from a loaded model: the side-by-side base/LoRA stream (``generate``), its batched decoder
(``decode``), and the Korean refusal detector and scorecard (``safety``).

May import: kft.system, kft.config, kft.data, kft.runs, kft.models.
"""
