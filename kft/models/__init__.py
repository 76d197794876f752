"""Loading models: ``loading`` is the one place that picks Unsloth or transformers + PEFT; ``tiny`` builds the
offline tiny Llama; ``compat`` holds the shims the pinned stack needs.

May import: kft.system, kft.config, kft.data, kft.runs.
"""
