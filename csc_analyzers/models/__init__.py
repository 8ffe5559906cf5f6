"""The project's networks: the paper's CIFAR-10 net, a small ResNet, VGG-16, ResNet-50."""
from .network import NETWORK_NAMES, Network, load_network  # noqa: F401
from .training import TrainConfig, cached_weights, default_cache_dir, train  # noqa: F401

__all__ = ["NETWORK_NAMES", "Network", "load_network", "TrainConfig", "cached_weights",
           "default_cache_dir", "train"]
