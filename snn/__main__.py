"""``python -m snn <verb> ...`` (also ``torchrun --nproc-per-node N -m snn train ...``): the ``snn`` command."""

import sys

from snn.app.cli import main

if __name__ == "__main__":  # spawned DDP workers re-import this module as __mp_main__: they must not run main
    sys.exit(main())
