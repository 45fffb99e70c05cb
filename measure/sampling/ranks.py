"""Where this process stands in a sharded measurement (`accelerate launch -m measure run ...`), and the
collectives the pipeline needs: barrier, rank-0-first, gather of rows in question order, broadcast.

One process (no launcher) is rank 0 of 1 and every collective is a no-op. On a machine without CUDA the
processes join as CPU ranks over gloo.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import Any

from measure.records.records import GenerationTiming, QuestionSamples

CACHE = "samples.partial.jsonl"   # a single process's sampling resume cache


@dataclasses.dataclass(frozen=True)
class Ranks:
    """This process's place in a sharded measurement: every process of an `accelerate launch` runs
    measure_model; rank r samples the batches b with b % world == r (measure.sampling.sample.batch_plan)."""
    rank: int = 0
    world: int = 1
    state: Any = None   # accelerate.PartialState when sharded

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            self.state.wait_for_everyone()

    def main_first(self):
        """Rank 0 first (hub downloads land in the cache once), then the others."""
        return self.state.main_process_first() if self.world > 1 else contextlib.nullcontext()

    def cache_name(self) -> str:
        """Each rank resumes from its own cache; a single process keeps the plain name."""
        return CACHE if self.world == 1 else f"samples.partial.rank{self.rank}-of-{self.world}.jsonl"

    def gather(self, rows: list[QuestionSamples], timing: GenerationTiming,
               questions: list) -> tuple[list[QuestionSamples], GenerationTiming]:
        """All ranks' rows in the benchmark's question order, and generation seconds summed over ranks
        (GPU-seconds, so seconds per question stay comparable with a single process)."""
        if self.world == 1:
            return rows, timing
        from accelerate.utils import gather_object
        by_id = {r.question.id: r for r in gather_object(rows)}
        return [by_id[q.id] for q in questions], sum(gather_object([timing]), GenerationTiming())

    def broadcast(self, obj: Any) -> Any:
        if self.world == 1:
            return obj
        from accelerate.utils import broadcast_object_list
        return broadcast_object_list([obj], from_process=0)[0]


def leave_process_group() -> None:
    """The ranks of a launch meet once more, then close their process group before the interpreter exits:
    a gloo group still alive at exit can abort a rank (std::terminate) whose peer is mid-send, which
    turns a finished sharded run into a failed launch."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_launched_process() -> None:
    """End a launched rank (one that joined a process group) now that its work is written: flush and
    os._exit(0). Even after destroy_process_group, c10d's store and gloo's threads can still be joinable when
    the interpreter runs C++ static destructors, and std::terminate then aborts a rank whose outputs are
    complete (seen once under load on 2 CPU cores). A process that never joined a group exits normally."""
    import sys
    import torch.distributed as dist
    if not (dist.is_available() and (dist.is_initialized() or "RANK" in os.environ and "WORLD_SIZE" in os.environ)):
        return
    leave_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def ranks(shard: bool) -> Ranks:
    """shard=True: every process calls measure_model (one process: rank 0 of 1, nothing changes).

    On a machine without CUDA the processes join as CPU ranks over gloo: accelerate's PartialState
    only forms a CPU group when asked for `cpu` (its launcher's --cpu flag starts a single process
    unless an MPI hostfile is given, so CPU ranks come from `--multi_gpu` or torchrun)."""
    if not shard:
        return Ranks()
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available())
    return Ranks(state.process_index, state.num_processes, state)
