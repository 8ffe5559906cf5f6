"""Image data: the built-in shapes dataset, real CIFAR-10, ImageNet images."""
from . import builtin, cifar10, imagenet  # noqa: F401
