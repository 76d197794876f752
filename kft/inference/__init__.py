"""Answers from a loaded model: the side-by-side rows (base, LoRA, any adapters) and the scorecard's batches
(``generate``, through kft.engine where the architecture allows it), and the Korean refusal detector and
scorecard (``safety``).

May import: kft.system, kft.config, kft.data, kft.runs, kft.models, kft.engine.
"""
