"""Loihi 2 backend through Lava: fixed-point compile, bit-exact torch emulation, netx export, Lava runs.

- :mod:`hardware.lava.compile`     our network -> Loihi 2 fixed point (:class:`LoihiNetwork`)
- :mod:`hardware.lava.emulate`     integer emulation in torch, bit-exact with Lava's fixed-point models
- :mod:`hardware.lava.netx_export` the compiled network as a lava-dl netx HDF5 file
- :mod:`hardware.lava.runner`      runs INSIDE ``.venv-lava`` (Python 3.10, lava-nc 0.10.0)
- :mod:`hardware.lava.driver`      main-environment side: subprocess + files, with a timeout
- :mod:`hardware.lava.deploy`      the job behind ``snn deploy``: compile, emulate, run in Lava, compare
- :mod:`hardware.lava.cli`         ``snn deploy`` and the demo stage
"""
