"""What a user runs, apart from what a user imports: the ``snn`` command and the jobs behind it.

- :mod:`snn.app.cli`         the parser, ``main`` and the plugin verbs (entry-point group ``spikeforge.verbs``)
- :mod:`snn.app.options`     the plugin kit: option types and the shared option groups
- :mod:`snn.app.jobs`        ``snn train`` and ``snn evaluate``: train a classifier, test a checkpoint
- :mod:`snn.app.distributed` the data-parallel launcher (DDP) that runs a job on N processes
- :mod:`snn.app.demo`        ``snn demo``: the stages and the report (entry-point group ``spikeforge.demo_stages``)

The library (everything else in :mod:`snn`) never imports this package.
"""
