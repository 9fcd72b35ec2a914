"""The partition processor: log records, the pure state machine, the store and its keys.

Nothing here does I/O on its own except the store implementations; the state machine reads no
clock and draws no randomness (DESIGN §5).
"""
