"""Seeding the global random generators before a fit or an artifact build."""
from __future__ import annotations

import random

import numpy as np
import torch

from ood_bench.engine.cache import digest


def seed_everything(seed: int, salt: str) -> None:
    """Seed the global RNGs (weight initialisation, dropout) from the run seed and ``salt`` (a
    method's or an artifact kind's name), so results do not depend on what ran before in the process."""
    s = int(digest({"seed": seed, "salt": salt}, 8), 16)
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
