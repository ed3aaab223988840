"""Benchmarks of stream-ser: scripts run as ``python benchmarks/NAME.py`` that print figures
(``benchmarks/README.md``). A package only so that tests can import a script's shared code
(``tests/test_soak.py`` runs ``benchmarks.soak`` for five minutes); nothing here is installed."""
