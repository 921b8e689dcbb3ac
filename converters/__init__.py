"""ANN-to-SNN conversion and NIR import/export (built on :mod:`snn`)."""
