"""The sans-I/O replay engine (see ``machine.py``)."""
