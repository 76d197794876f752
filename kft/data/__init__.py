"""Training rows: file readers (``files``), loading, column mapping and row checks (``rows``), and the prompt
template saved next to every adapter (``template``).

May import: kft.system, kft.config.
"""
