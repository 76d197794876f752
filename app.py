"""kft app: parse flags, build the UI, launch. No logic here (see kft/ and kft/ui/)."""

from __future__ import annotations

import logging

from kft.settings import check_settings, parse_settings


def main() -> None:
    settings = parse_settings()
    check_settings(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from kft.ui.server import launch

    launch(settings)


if __name__ == "__main__":
    main()
