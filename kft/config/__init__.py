"""A run's settings and the app's: the dataclasses whose fields carry each setting's facts (``args``), settings
files (``files``), validation into structured problems (``validation``), named presets (``presets``) and the
``python app.py`` flags (``app_settings``).

May import: kft.system.
"""
