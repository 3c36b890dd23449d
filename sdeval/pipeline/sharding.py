"""Running one evaluation over several processes (``torchrun``), with one process's results.

Each rank evaluates a contiguous shard of the inputs; afterwards rank 0 gathers what the set-level
metrics need — float64 moments (n, mean, centred sum of outer products) merged exactly with
Chan's update, and the float32 feature banks KID/CMMD read (re-sorted by path, so their order does
not depend on the sharding) — plus every per-image row, which concatenated in rank order are the
rows of a single process. Collectives go over a gloo group (CPU tensors, works across nodes over
TCP), created beside the default group when the caller already initialised another backend.
:func:`gather_shards` is the one merge of the shards' results.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence, TypeVar

if TYPE_CHECKING:
    from sdeval.metrics.set_base import FeatureSet
    from sdeval.pipeline.run import RunStats

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run; ``world_size == 1`` means no collectives at all."""

    rank: int = 0
    world_size: int = 1
    owns_group: bool = False
    group: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> Sequence[T]:
        """This rank's contiguous slice (rank order = input order)."""
        n = len(items)
        return items[self.rank * n // self.world_size:(self.rank + 1) * n // self.world_size]

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0 (in rank order); None elsewhere."""
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0, group=self.group)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.world_size == 1:
            return obj
        import torch.distributed as dist

        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    def close(self, clean: bool = True) -> None:
        """Tear down the group we created (a barrier first unless leaving on an error); idempotent."""
        if self.owns_group and self.world_size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                if clean:
                    dist.barrier(group=self.group)
                dist.destroy_process_group()


def env_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def rank_device(device: str | None, mode: bool | str | None = "auto") -> str | None:
    """``cuda:LOCAL_RANK`` for an automatic or bare ``cuda`` device under torchrun, so each rank of a node
    gets its own GPU; any other choice (``cpu``, ``cuda:3``) is kept."""
    if mode is False or mode == "off" or env_world_size() <= 1 or device not in (None, "", "auto", "cuda"):
        return device
    local = os.environ.get("LOCAL_RANK")
    if local is None:
        return device
    import torch

    if not torch.cuda.is_available():
        return device
    index = int(local) % max(torch.cuda.device_count(), 1)
    torch.cuda.set_device(index)
    return f"cuda:{index}"


def init(mode: bool | str | None = "auto") -> DistContext:
    """A context for this process: from torchrun's environment (``auto``), or single-process.

    ``True`` requires the environment (a usage error without it); ``False`` ignores it.
    """
    from sdeval.core.errors import UsageError

    if mode is False or mode == "off":
        return DistContext()
    world = env_world_size()
    if world <= 1:
        if mode is True:
            raise UsageError("distributed evaluation needs torchrun's environment (WORLD_SIZE, RANK, MASTER_ADDR); "
                             "run `torchrun --nproc-per-node N -m sdeval eval ...`")
        return DistContext()
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
        owns = True
    group = None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), owns_group=owns, group=group)


@dataclass
class Shard:
    """One process's share of one pass: its rows, its streamed feature sets, its statistics."""

    rows: list[dict[str, Any]]
    sets: dict[str, "FeatureSet"]
    stats: "RunStats"

    def state(self) -> dict[str, Any]:
        return {"rows": self.rows, "sets": {k: v.state() for k, v in self.sets.items()},
                "stats": self.stats.state()}


def gather_shards(ctx: DistContext, shards: Mapping[str, Shard]) -> dict[str, Shard] | None:
    """Every rank's shards of each pass (``{"generated": ..., "reference": ...}``) merged on rank 0.

    Rows are concatenated in rank order (= input order) and their duplicates marked again across
    shards; feature sets are merged in rank order (moments exactly, banks re-sorted by path);
    statistics are summed. One process: the shards unchanged. Other ranks: None.
    """
    if ctx.world_size == 1:
        return dict(shards)
    from sdeval.metrics.set_base import FeatureSet
    from sdeval.pipeline.rows import mark_duplicates
    from sdeval.pipeline.run import RunStats

    gathered = ctx.gather({name: shard.state() for name, shard in shards.items()})
    if gathered is None:
        return None
    out: dict[str, Shard] = {}
    for name in shards:
        parts = [g[name] for g in gathered]
        rows = [r for p in parts for r in p["rows"]]
        stats = RunStats.merged([p["stats"] for p in parts])
        if rows:
            stats.duplicates = mark_duplicates(rows)
        sets = {}
        for fid in parts[0]["sets"]:
            merged = FeatureSet.from_state(parts[0]["sets"][fid])
            for p in parts[1:]:
                merged.merge(FeatureSet.from_state(p["sets"][fid]))
            sets[fid] = merged
        out[name] = Shard(rows, sets, stats)
    return out
