"""Shared pytest settings: the test machines have few cores, shared between processes."""

import torch

torch.set_num_threads(2)
