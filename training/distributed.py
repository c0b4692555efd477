"""torchrun / DistributedDataParallel glue: every helper is a no-op in a single process.

Under `torchrun --nproc_per_node N -m training ...` each process trains on its own share of
every global batch (data.batch_indices) with its own latents, G and D have separate DDP
wrappers, and rank 0 alone writes files. Losses and D's verdicts are averaged over the
processes every step, so every process sees the same numbers and takes the same decisions
(a rollback in one process and not the others would hang the run).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from gan_serve.errors import InputError


class World:
    """This process's place in the run: rank, world size, local rank (from torchrun's env)."""

    def __init__(self) -> None:
        self.rank = int(os.environ.get("RANK", 0))
        self.size = int(os.environ.get("WORLD_SIZE", 1))
        self.local_rank = int(os.environ.get("LOCAL_RANK", 0))
        self.comm = torch.device("cpu")  # where collective tensors live (CUDA under NCCL)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, wanted: str) -> torch.device:
        if wanted == "cuda" or (wanted == "auto" and torch.cuda.is_available()):
            if not torch.cuda.is_available():
                raise InputError("--device cuda, but torch sees no CUDA GPU; use --device cpu")
            torch.cuda.set_device(self.local_rank)
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def start(self, device: torch.device) -> None:
        import torch.distributed as dist

        if self.size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        self.comm = device

    def wrap(self, G: nn.Module, D: nn.Module, sync_bn: bool, device: torch.device,
             ) -> tuple[nn.Module, nn.Module]:
        """DDP wrappers for G and D (separate, so G's and D's gradient syncs stay apart)."""
        if self.size == 1:
            return G, D
        from torch.nn.parallel import DistributedDataParallel as DDP

        if sync_bn:
            if device.type != "cuda":
                raise InputError("--sync-bn needs CUDA (torch's SyncBatchNorm does not run on the CPU); "
                                 "leave it off for CPU runs")
            G, D = (nn.SyncBatchNorm.convert_sync_batchnorm(m) for m in (G, D))  # in place for G, D
        ids = [device.index] if device.type == "cuda" else None
        return DDP(G, device_ids=ids), DDP(D, device_ids=ids)

    def mean(self, values: list[float]) -> list[float]:
        """Average over the processes (NaN anywhere gives NaN everywhere)."""
        if self.size == 1:
            return values
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.comm)
        dist.all_reduce(t)
        return (t / self.size).cpu().tolist()

    def share(self, obj: object) -> object:
        """Rank 0's `obj` in every process."""
        if self.size == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

    def check_in_sync(self, *modules: nn.Module) -> None:
        """Every process must hold the same weights; a difference is a bug, not a user error."""
        if self.size == 1:
            return
        import torch.distributed as dist

        sums = torch.tensor([float(p.detach().double().sum()) for m in modules for p in m.parameters()],
                            dtype=torch.float64, device=self.comm)
        gathered = [torch.empty_like(sums) for _ in range(self.size)]
        dist.all_gather(gathered, sums)
        if not all(torch.equal(gathered[0], g) for g in gathered[1:]):
            raise RuntimeError("DDP processes hold different weights; please report this bug")

    def stop(self) -> None:
        import torch.distributed as dist

        if self.size > 1 and dist.is_initialized():
            dist.destroy_process_group()
