"""One training run: the job and its thread (``job``), TRL's trainer without host syncs (``trainer``), its callback
(``recorder``), the run as plain data (``snapshot``), SFTConfig (``sft``), pace, the refusal watch, memory
figures, and the checks made before a run starts (``preflight``).

May import: kft.system, kft.config, kft.data, kft.runs, kft.models, kft.inference.
"""
