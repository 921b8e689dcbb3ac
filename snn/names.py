"""The names the command line offers as choices, kept free of heavy imports.

``snn --help`` builds its parser from these tuples without importing torch. Each is the
key list of a table in the module that owns the thing named (the tests check they agree):

- :data:`DATASETS`: the keys of :data:`snn.data.LOADERS` (:func:`snn.data.load_dataset`'s datasets);
- :data:`ARCHITECTURES`: :func:`snn.models.build_model`'s architectures;
- :data:`ENCODERS`: :data:`snn.training.ENCODERS`;
- :data:`NEURON_FLAGS`: the keys of :data:`snn.neurons.NEURONS_BY_FLAG`, in its order.
"""

from __future__ import annotations

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder", "nmnist", "dvs-gesture", "shd")
ARCHITECTURES = ("mlp", "cnn", "rnn", "vgg", "resnet")
ENCODERS = ("direct", "rate", "rows", "frames")
NEURON_FLAGS = ("if", "lif", "cuba", "alif")

MAX_TIMESTEPS = 10_000  # simulation steps per sample any verb accepts (snn.resources bounds the memory too)
