"""QAT under torch.distributed (#6): two gloo processes, DistributedDataParallel, sync_observers."""
import faulthandler
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

import torchquantx as tqx
from test_qat import ConvBnReluLinear

WORLD = 2


Net = ConvBnReluLinear  # conv + BN + ReLU + linear: every QAT piece, small enough for three DDP steps


def _qparams(qmodel: torch.jit.ScriptModule):
    return [(n.inputsAt(1).toIValue(), n.inputsAt(2).toIValue())
            for n in qmodel.graph.findAllNodes("aten::quantize_per_tensor")]


def _worker(rank: int, port: int, out_dir: str) -> None:
    faulthandler.dump_traceback_later(120, exit=True)  # a hung collective fails the test instead of CI
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    results = {}
    for learnable in (False, True):
        torch.manual_seed(0)  # the same float model on every rank (DDP also broadcasts rank 0's parameters)
        qat = tqx.prepare_qat(Net().train(), qconfig="fbgemm", learnable=learnable)
        ddp = nn.parallel.DistributedDataParallel(qat)
        opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)
        g = torch.Generator().manual_seed(100 + rank)  # different data on each rank
        for _ in range(3):
            # rank 1's activations span a wider range, so unsynchronised ranges would differ
            x = torch.randn(8, 3, 8, 8, generator=g) * (1 + rank)
            loss = F.cross_entropy(ddp(x), torch.randint(0, 10, (8,), generator=g))
            opt.zero_grad()
            loss.backward()
            opt.step()
            local = [(fq.min_val(), fq.max_val()) for fq in tqx.qat._fake_quantizers(qat._c)]
            tqx.sync_observers(ddp)
        tqx.freeze_bn_stats(qat)
        tqx.disable_observer(qat)
        qat.eval()
        qmodel = tqx.convert(qat)
        x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            results[learnable] = {"local": local, "qparams": _qparams(tqx.convert(qat, target="reference")),
                                  "out": qmodel(x),
                                  "lsq": [p.detach().clone() for p in tqx.learnable_qparams(qat)]}
        del ddp
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("ddp"))
    mp.spawn(_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
    return [torch.load(os.path.join(out, f"rank{r}.pt")) for r in range(WORLD)]


@pytest.mark.parametrize("learnable", [False, True], ids=["ste", "lsq"])
def test_ranks_convert_to_identical_models(ranks, learnable):
    r0, r1 = ranks[0][learnable], ranks[1][learnable]
    assert r0["local"] != r1["local"]  # the ranks saw different ranges before the last sync
    assert len(r0["qparams"]) == 3 and r0["qparams"] == r1["qparams"]
    assert torch.equal(r0["out"], r1["out"])
    if learnable:
        assert len(r0["lsq"]) == 6
        assert all(torch.equal(a, b) for a, b in zip(r0["lsq"], r1["lsq"]))
        # convert used the learned scales (per fake-quantizer: scale, zero point)
        assert [s for s, _ in r0["qparams"]] == [p.item() for p in r0["lsq"][0::2]]


def test_sync_observers_without_process_group_is_a_no_op():
    qat = tqx.prepare_qat(Net().train())
    assert tqx.sync_observers(qat) is qat
    with pytest.raises(TypeError, match="prepare_qat"):
        tqx.sync_observers(Net())


def test_min_max_reduction_is_the_global_batch_moving_average():
    # What sync_observers' MIN/MAX all-reduce computes when called every step: each process moves
    # the same average towards its own batch's bound; the extreme of those is the average moved
    # towards the global batch's bound.
    g = torch.Generator().manual_seed(0)
    procs = [torch.classes.quantx.FakeQuantize(0, 255, 0.01) for _ in range(WORLD)]
    single = torch.classes.quantx.FakeQuantize(0, 255, 0.01)
    for _ in range(5):
        batches = [torch.randn(64, generator=g) * (1 + r) for r in range(WORLD)]
        for fq, b in zip(procs, batches):
            fq.forward(b, True)
        single.forward(torch.cat(batches), True)
        lo, hi = min(fq.min_val() for fq in procs), max(fq.max_val() for fq in procs)
        for fq in procs:
            fq.set_min_max(lo, hi)
        assert (lo, hi) == (single.min_val(), single.max_val())
