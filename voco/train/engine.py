"""Training engines: how a step runs on one process, under DDP, or under FSDP2; chosen by `engine.kind`.

Built on torch's own engines directly (DistributedDataParallel, FSDP2 `fully_shard`, torch.autocast),
not through accelerate: the VoCo step calls the LM several times per step (compression pass, prompt
prefix, question pass, the KL teacher) and calls its submodules directly, so wrappers that only act
around the top module's `forward` do not fit, while FSDP2's per-module hooks and DDP's reducer do.

- `single`: one process.
- `ddp`: every rank holds the model; DDP all-reduces gradients (`find_unused_parameters`: a stage may
  leave parameters unused, e.g. <voco> in the full view).
- `fsdp`: every transformers block (the LM's decoder layers, the vision tower's encoder layers: the
  `GradientCheckpointingLayer`s) is a FSDP2 unit, sharded across ranks and gathered only while it runs;
  the rest (embeddings, LM head, norms, projector, auxiliary heads; ~4% of LLaVA-1.5-7B) stays replicated
  and its gradients are averaged here. Validation and saving gather the whole model on every rank for
  the duration (`full_model`).

Every engine: precision `bf16` runs forward and backward under torch.autocast(bfloat16) (CUDA and CPU), over
the parameters' own dtype (fp32 master weights); gradient checkpointing is transformers' own, per layer
(`voco.recompute`).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from voco.recompute import enable_gradient_checkpointing
from voco.train.config import ENGINE_KINDS, EngineSpec


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(want: str, local_rank: int) -> torch.device:
    if want == "auto":
        want = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    elif want == "cuda":
        want = f"cuda:{local_rank}"
    return torch.device(want)


class Engine:
    """The `single` engine; subclasses add the process group, the wrapper and the gradient exchange."""

    kind = "single"

    def __init__(self, spec: EngineSpec, device: str = "auto"):
        self.spec = spec
        world = int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = resolve_device(device, local)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.dist = Dist(0, world, local)
        self._init_group(world)

    def _init_group(self, world: int) -> None:
        if world > 1:
            raise RuntimeError(f"WORLD_SIZE={world} (torchrun) but engine.kind is 'single': set engine.kind to "
                               "'ddp' or 'fsdp' in the config, or run one process")

    # ---- model ------------------------------------------------------------------------------------

    def prepare(self, model) -> None:
        """Move the model to the device and turn on gradient checkpointing (before any wrapping)."""
        model.to(self.device)
        if self.spec.gradient_checkpointing:
            enable_gradient_checkpointing(model.lm)
            enable_gradient_checkpointing(model.vision_tower)

    def wrap(self, module: nn.Module) -> nn.Module:
        """The stage's train module as the step calls it."""
        return module

    def param_groups(self, groups: list[dict]) -> list[dict]:
        return groups

    # ---- step -------------------------------------------------------------------------------------

    def autocast(self):
        if self.spec.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def reduce_gradients(self, params: list[torch.Tensor]) -> None:
        """After backward: make every rank's gradients the average over ranks (DDP and FSDP do most of it)."""

    def clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)

    # ---- state ------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def full_model(self, model):
        """Within: `model` holds all its weights as plain tensors on rank 0 (validate, save). Every rank enters."""
        yield model

    def saveable(self, model):
        """Inside `full_model`, on rank 0: the model to `save_pretrained` (plain tensors)."""
        return model

    def optimizer_state(self, module: nn.Module, optimizer) -> dict | None:
        """The optimizer state to save (on rank 0; every rank calls this)."""
        return optimizer.state_dict()

    def load_optimizer_state(self, module: nn.Module, optimizer, state: dict) -> None:
        optimizer.load_state_dict(state)

    def rank_digests(self, model: nn.Module) -> list[str]:
        """sha256 of every rank's weights (inside `full_model`), gathered to all ranks: equal when in sync."""
        digest = weights_digest(model)
        if self.dist.world == 1:
            return [digest]
        out: list = [None] * self.dist.world
        torch.distributed.all_gather_object(out, digest)
        return out

    def barrier(self) -> None:
        if self.dist.world > 1:
            torch.distributed.barrier()

    def peak_memory_mb(self) -> tuple[float, str]:
        """Peak memory of this process so far: CUDA max allocated on a GPU, else the process's peak RSS."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20, "cuda_max_allocated"
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_peak_rss"


class DDPEngine(Engine):
    kind = "ddp"

    def _init_group(self, world: int) -> None:
        if "RANK" not in os.environ:
            raise RuntimeError(f"engine.kind {self.kind!r} runs under torchrun (torchrun --nproc_per_node N -m "
                               "voco.train ...); for one process use engine.kind 'single'")
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend="nccl" if self.device.type == "cuda" else "gloo")
        self.dist.rank = torch.distributed.get_rank()

    def wrap(self, module: nn.Module) -> nn.Module:
        return nn.parallel.DistributedDataParallel(
            module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=True)


def weights_digest(model: nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes), in name order."""
    import hashlib

    h = hashlib.sha256()
    tensors = dict(model.named_parameters(remove_duplicate=False))  # not state_dict(): FSDP2 would give shards
    tensors.update(model.named_buffers(remove_duplicate=False))
    for name, t in sorted(tensors.items()):
        t = t.detach().to("cpu", copy=True).contiguous()  # a copy: numpy() would pin the storage's size
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _is_dtensor(t: torch.Tensor) -> bool:
    from torch.distributed.tensor import DTensor

    return isinstance(t, DTensor)


class FSDPEngine(DDPEngine):
    kind = "fsdp"

    def prepare(self, model) -> None:
        import copy

        from torch.distributed.fsdp import fully_shard

        # rank 0 keeps a plain CPU copy to save from (FSDP2's state_dict gives shards; `saveable` fills the copy)
        self._shadow = copy.deepcopy(model).cpu() if self.dist.main else None
        super().prepare(model)
        self.units = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
        if not self.units:
            raise ValueError("fsdp found no transformers blocks (GradientCheckpointingLayer) to shard")
        # A block's weights receive gradients through the KV cache too (the compression pass keeps K/V, the
        # question pass reads them), a path FSDP2's backward hooks on the block's outputs do not see, and a
        # block runs several times per step: so a block, once gathered, stays whole until the step's backward
        # is over (`reduce_gradients` reshards); at rest (optimizer step, between steps) everything is sharded.
        for unit in self.units:
            fully_shard(unit, reshard_after_forward=False)
            unit.set_reshard_after_backward(False)

    def wrap(self, module: nn.Module) -> nn.Module:
        return module  # the blocks are sharded in `prepare`; every rank starts from the same seeded weights

    def param_groups(self, groups: list[dict]) -> list[dict]:
        """Sharded (DTensor) and replicated parameters in separate groups: foreach kernels take one kind."""
        out = []
        for group in groups:
            for sharded in (True, False):
                params = [p for p in group["params"] if _is_dtensor(p) == sharded]
                if params:
                    out.append({**group, "params": params})
        return out

    def reduce_gradients(self, params: list[torch.Tensor]) -> None:
        for unit in self.units:  # FSDP2 has reduce-scattered the blocks' gradients; free the gathered weights
            unit.reshard()
        grads = [p.grad for p in params if p.grad is not None and not _is_dtensor(p)]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])  # one all-reduce for the replicated remainder
        torch.distributed.all_reduce(flat)
        flat /= self.dist.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()

    def clip_grad_norm(self, params: list[torch.Tensor], max_norm: float) -> torch.Tensor:
        """torch's clip_grad_norm_ over sharded and replicated gradients together (the same total norm)."""
        grads = [p.grad for p in params if p.grad is not None]
        device = self.device
        sharded = torch.zeros((), device=device, dtype=torch.float32)
        replicated = torch.zeros((), device=device, dtype=torch.float32)
        for g in grads:
            if _is_dtensor(g):
                sharded += g.to_local().float().pow(2).sum()
            else:
                replicated += g.float().pow(2).sum()
        torch.distributed.all_reduce(sharded)
        total = (sharded + replicated).sqrt()
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.to(g.dtype) if not _is_dtensor(g) else float(coef))
        return total

    @contextlib.contextmanager
    def full_model(self, model):
        for unit in self.units:
            unit.unshard()
        try:
            yield model
        finally:
            for unit in self.units:
                unit.reshard()

    def saveable(self, model):
        live = dict(model.named_parameters(remove_duplicate=False))  # whole inside full_model
        live.update(model.named_buffers(remove_duplicate=False))
        with torch.no_grad():
            for name, tensor in self._shadow.state_dict().items():
                tensor.copy_(live[name])
        self._shadow.voco = model.voco  # settings the loop changes (voco_tuned)
        return self._shadow

    def optimizer_state(self, module: nn.Module, optimizer) -> dict | None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_optimizer_state_dict(module, optimizer, options=options)

    def load_optimizer_state(self, module: nn.Module, optimizer, state: dict) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

        set_optimizer_state_dict(module, optimizer, state, options=StateDictOptions(full_state_dict=True))


ENGINES: dict[str, type[Engine]] = {e.kind: e for e in (Engine, DDPEngine, FSDPEngine)}
assert tuple(ENGINES) == ENGINE_KINDS, "config.ENGINE_KINDS and engine.ENGINES must list the same kinds"


def make_engine(spec: EngineSpec, device: str = "auto") -> Engine:
    return ENGINES[spec.kind](spec, device)
