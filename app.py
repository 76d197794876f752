"""kft app: parse flags, build the UI, launch. No logic here (see kft/ and kft/ui/)."""

from __future__ import annotations

import logging

from kft.config.app_settings import check_settings, parse_settings

# Other libraries' lines a user need not read (shown with --verbose): bitsandbytes' notice that its optional CPU
# kernel package is missing (kft runs 4-bit only on a GPU), and one httpx line per request gradio makes to itself.
QUIET_LOGGERS = {"bitsandbytes": logging.ERROR, "httpx": logging.WARNING}


def setup_logging(verbose: bool) -> None:
    """kft's own lines only, unless ``verbose``; set before kft.ui is imported (bitsandbytes speaks on import)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:
        for name, level in QUIET_LOGGERS.items():
            logging.getLogger(name).setLevel(level)


def main() -> None:
    settings = parse_settings()
    check_settings(settings)
    setup_logging(settings.verbose)
    from kft.models.loading import preload_backend

    preload_backend()  # Unsloth before transformers (kft.ui imports it), and its import before the first Start
    from kft.ui.server import launch

    launch(settings)


if __name__ == "__main__":
    main()
