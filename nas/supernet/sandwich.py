"""One training step of the supernet by the sandwich rule (BigNAS, Yu et al. 2020; AttentiveNAS).

Each step trains, on one batch of images, the largest subnet on the labels (cross-entropy) and the
smallest plus `n_random` random subnets on the largest's predictions (in-place distillation: KL
divergence from the largest's detached softmax). Each subnet's backward pass runs right after its
forward, so only one graph is alive at a time; their gradients add up in the shared weights, and the
caller takes one optimiser step.

Everything random in a step is drawn from seeds derived from (run seed, step), never from a running
generator, so a run resumed at step k draws what an uninterrupted run draws there.
"""
from __future__ import annotations

import hashlib
import random
from typing import Mapping

import torch
import torch.nn.functional as F

from nas.errors import TrainingError
from nas.space import Arch, SearchSpace, sample
from nas.supernet.model import Supernet


def derive_seed(seed: int, kind: str, index: int) -> int:
    """A 63-bit seed for one use (`kind`: "archs", "dropout", "order") at one step or epoch of a run."""
    digest = hashlib.blake2b(f"{seed}:{kind}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def step_archs(space: SearchSpace, largest: Arch, smallest: Arch, seed: int, step: int,
               n_random: int) -> list[Arch]:
    """The subnets of one step: largest first (the teacher), then smallest, then `n_random` random ones."""
    rng = random.Random(derive_seed(seed, "archs", step))
    return [largest, smallest, *(sample(space, rng) for _ in range(n_random))]


def distill_loss(student_logits: torch.Tensor, teacher_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student), averaged over the batch: zero when the student predicts what the teacher does
    (its gradient is the soft cross-entropy's)."""
    return F.kl_div(F.log_softmax(student_logits, dim=1), teacher_log_probs, reduction="batchmean",
                    log_target=True)


def _finite(loss: torch.Tensor, what: str, where: str) -> torch.Tensor:
    if not torch.isfinite(loss.detach()):
        raise TrainingError(f"training diverged: the {what} loss is {loss.detach().item()} at {where}; "
                            f"try a lower learning rate")
    return loss


def sandwich_step(supernet: Supernet, images: Mapping[int, torch.Tensor], labels: torch.Tensor,
                  archs: list[Arch], where: str) -> tuple[float, float]:
    """Forward and backward every subnet of `archs` (the first is the teacher) on the batch, each at its own
    resolution (`images[res]`), accumulating gradients. Returns (the teacher's cross-entropy, the mean
    distillation loss of the others). `where` ("epoch 2, step 31") names the step in a divergence error."""
    teacher, students = archs[0], archs[1:]
    logits = supernet(images[supernet.plan(teacher).resolution], teacher)
    loss = _finite(F.cross_entropy(logits, labels), "largest subnet's", where)
    loss.backward()
    target = F.log_softmax(logits.detach(), dim=1)
    distilled = 0.0
    for i, arch in enumerate(students):
        kd = distill_loss(supernet(images[supernet.plan(arch).resolution], arch), target)
        _finite(kd, "smallest subnet's" if i == 0 else f"random subnet {i}'s", where).backward()
        distilled += float(kd.detach())
    return float(loss.detach()), distilled / max(len(students), 1)
