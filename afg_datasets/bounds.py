"""The numeric bounds: one registry of safety limits for every number a build config sets and
every number read from a file (a source's labels and shard lists, a recognizer's settings, a
document's integers), so nothing read can make the package allocate or loop without end.
Raise one here if a real corpus needs it."""

from __future__ import annotations

MAX_BATCH = 4096
MAX_EPOCHS = 1000
MAX_GROUPS = 64
MAX_GENOME_SIZE = 256
MAX_ITERS = 100_000
MAX_RENDER = 512  # a rendered picture's side (groupviz)
MAX_LR = 10.0  # a learning rate (training, rendering): more overflows float32 in Adam
MAX_REAL = 1e6  # a real-valued attack parameter (eps, step, learning rate, constant)
MAX_SOURCES = 10**9
MAX_IMAGE_SIZE = 4096  # image sides
MAX_IMAGE_FILE_BYTES = 256 * 2**20  # one image file of a source
MAX_SOURCE_FILE_BYTES = 4 * 2**30  # one data file of a bundled source (MNIST, CIFAR)
MAX_CLASSES = 100_000  # ImageNet-21k has 21,841
MAX_SHARDS = 200_000  # shards one source may list (a brace pattern is expanded at most this far)
MAX_LAYERS = 64  # tapped layers of a saved recognizer
MAX_CHANNELS = 65_536  # channels of one tapped layer
MAX_PROCESSES = 4096  # worker, loader and thread counts
MAX_DEVICES = 100_000  # devices `afg estimate` plans for
MAX_SEEDS = 100  # training seeds of a benchmark
MAX_REPEATS = 10_000  # benchmark passes and kill points
MAX_COMMIT_FILES = 10_000  # files in one Hub commit
