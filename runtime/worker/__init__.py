"""The per-partition shell around the pure processor: log reading, leadership, timers."""
