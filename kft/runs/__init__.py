"""Runs on disk: ``store`` (``RunDir`` names a run directory's files; listing, claiming, resuming),
``integrity`` (the run's files read back without raising: torn JSON lines, checkpoints checked whole) and
``export`` (a zip of the adapter, a push to the Hub).

May import: kft.system, kft.config.
"""
