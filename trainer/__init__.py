"""Distillation trainer: teacher first, then the four-convolution student (see ``trainer.loop.train``)."""
