"""Hardware backends (Lava / Loihi 2, Brian2) and energy-per-inference accounting (built on :mod:`snn`)."""
