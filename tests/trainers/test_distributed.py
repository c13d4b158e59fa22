"""Scale-out training on 2 gloo processes (CPU): the distributed update equals the single-process one.

- DDP and FSDP2: the gradient of ``W * local_masked_sum / all_reduce(tokens)`` (ranks holding unequal
  token counts and unequal numbers of micro-batches, padded with zero-mask ones) equals the gradient of
  the single-process token mean over the whole batch; a per-rank token mean (the naive loss) does not;
- FSDP2: the clipped gradient norm, one AdamW step, and the exported (full) state dict's names;
- ``torchrun --nproc_per_node=2 -m arpo_env.cli train`` with replayed per-prompt rollouts
  (``tests.helpers.dist_replay``) ends with the parameters of a world-size-1 run; a run with one rank
  SIGKILLed (DDP + LoRA) resumes from the newest complete checkpoint without a duplicated or missing metric step.
"""
from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from arpo_env.trainers.checkpoint import latest_checkpoint
from arpo_env.trainers.config import BranchingConfig, TrainConfig
from arpo_env.trainers.metrics import read_metrics
from tests.helpers.shared_data import REPO_ROOT as ROOT
from tests.helpers.waiting import wait_until

LENGTHS = [5, 7, 12, 9, 14, 6, 11]
SHARES = {0: [0, 1], 1: [2, 3, 4, 5, 6]}  # rank 0: 2 short rows (1 micro-batch), rank 1: 5 long ones (3)
MICRO = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _batch() -> list[dict[str, torch.Tensor]]:
    """Rows of random ids, masks (some tokens untrained) and advantages; the same in every process."""
    g = torch.Generator().manual_seed(7)
    rows = []
    for n in LENGTHS:
        ids = torch.randint(3, 300, (n,), generator=g)
        mask = (torch.rand(n - 1, generator=g) > 0.3).float()
        mask[0] = 1.0
        rows.append({"ids": ids, "mask": mask, "adv": torch.randn(n - 1, generator=g)})
    return rows


def _micro(rows: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    out = []
    for k in range(0, len(rows), MICRO):
        part = rows[k:k + MICRO]
        t = max(len(r["ids"]) for r in part)
        m = {"ids": torch.zeros(len(part), t, dtype=torch.long), "attn": torch.zeros(len(part), t, dtype=torch.long),
             "mask": torch.zeros(len(part), t - 1), "adv": torch.zeros(len(part), t - 1)}
        for j, r in enumerate(part):
            n = len(r["ids"])
            m["ids"][j, :n], m["attn"][j, :n] = r["ids"], 1
            m["mask"][j, :n - 1], m["adv"][j, :n - 1] = r["mask"], r["adv"]
        out.append(m)
    return out


def _backward(model, micro, total: float, scale: float) -> None:
    """The trainer's per-micro-batch loss: dual-clip PPO per token, ``scale * masked sum / total``."""
    from arpo_env.trainers.losses import ppo_dual_clip_loss, token_logprobs

    for m in micro:
        logits = model(input_ids=m["ids"], attention_mask=m["attn"], use_cache=False).logits[:, :-1]
        logp = token_logprobs(logits, m["ids"][:, 1:])
        out = ppo_dual_clip_loss(logp, logp.detach() - 0.05, m["adv"], clip_low=0.2, clip_high=0.2, dual_clip_c=3.0)
        ((out.per_token * m["mask"]).sum() * scale / total).backward()


def _full_grads(model) -> dict[str, torch.Tensor]:
    from torch.distributed.tensor import DTensor
    module = getattr(model, "module", model)
    return {n: (p.grad.full_tensor() if isinstance(p.grad, DTensor) else p.grad).detach().clone()
            for n, p in module.named_parameters() if p.grad is not None}



def test_shards_cover_the_step_once_and_refuse_too_few_prompts():
    from arpo_env.trainers.distributed import DistInfo, shard

    parts = [shard(7, DistInfo(r, 3)) for r in range(3)]
    assert [list(p) for p in parts] == [[0, 1], [2, 3], [4, 5, 6]]
    assert shard(5, DistInfo()) == range(5)  # world size 1: the whole step
    with pytest.raises(ValueError, match="prompts_per_step"):
        shard(1, DistInfo(0, 2))
    assert DistInfo(0, 2).seed_seq(3, 1) == [3, 1] and DistInfo(1, 2).seed_seq(3, 1) == [3, 1, 1]


def test_merged_metrics_are_means_over_every_leaf_of_every_rank():
    from arpo_env.trainers.step_metrics import merge, rollout_metrics

    def part(rewards, branches, t):
        return {"rewards": rewards, "tool_calls": [1] * len(rewards), "response_tokens": [4] * len(rewards),
                "branch_entropies": [], "initial_n": [2], "branches": branches, "branch_attempts": 1, "topups": 0,
                "generated_tokens": 10, "prompts": 1, "gen_total": 8, "gen_unique": 6, "time_gen": t,
                "time_tools": t, "time_rollout": t, "time_update": t, "time_step": 2 * t,
                "tool_calls_executed": len(rewards)}
    m = rollout_metrics(merge([part([1.0], 1, 2.0), part([0.0, 0.0, 0.0], 2, 5.0)]))
    assert m["reward"] == 0.25 and m["accuracy"] == 0.25  # not the mean of the ranks' means (0.5)
    assert (m["branches"], m["generated_tokens"], m["time_update"]) == (3, 20, 5.0)
    assert m["prefix_saved_share"] == pytest.approx(1 - 12 / 16)
    assert (m["tool_calls_executed"], m["tool_calls_executed_per_sample"], m["time_step"]) == (4, 1.0, 10.0)


def test_parallel_settings_are_checked(monkeypatch):
    from arpo_env.trainers import distributed as D

    with pytest.raises(ValueError, match="TrainConfig.parallel"):
        TrainConfig(parallel="zero3")
    with pytest.raises(ValueError, match="dist_timeout_s"):
        TrainConfig(dist_timeout_s=0)
    assert D.init("ddp", 10.0) == D.DistInfo()  # no launcher: world size 1, nothing joined
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="--parallel ddp"):
        D.init("none", 10.0)

def _worker(rank: int, parallel: str, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from arpo_env.agents.testing import tiny_model_and_tokenizer
    from arpo_env.trainers import distributed as D

    info = D.init(parallel, 120.0)
    rows = _batch()
    model, _ = tiny_model_and_tokenizer(seed=0)
    model.train()
    ref, naive = copy.deepcopy(model), copy.deepcopy(model)
    ref_total = float(sum(r["mask"].sum() for r in rows))
    _backward(ref, _micro(rows), ref_total, 1.0)  # the single process: the whole batch, one token mean
    mine = [rows[i] for i in SHARES[rank]]
    local = float(sum(r["mask"].sum() for r in mine))
    total, scale = D.token_mean_scale(local, info)
    micro = D.pad_micro_batches(_micro(mine), info, lambda: D.dummy_micro(0, torch.device("cpu")))
    wrapped = D.wrap_model(model, info)
    _backward(wrapped, micro, total, scale)
    naive_w = D.wrap_model(naive, info)
    _backward(naive_w, D.pad_micro_batches(_micro(mine), info, lambda: {}), local, 1.0)  # per-rank token mean
    res: dict = {"micro": len(micro), "total": total, "local": local, "ref": _full_grads(ref),
                 "dist": _full_grads(wrapped), "naive": _full_grads(naive_w)}
    if parallel == "fsdp2":
        params = [p for p in model.parameters() if p.requires_grad]
        res["norm"] = D.clip_grad_norm(params, 0.01)
        res["ref_norm"] = float(torch.nn.utils.clip_grad_norm_(list(ref.parameters()), 0.01))
        res["clipped"], res["ref_clipped"] = _full_grads(model), _full_grads(ref)
        for m, ps in ((model, params), (ref, list(ref.parameters()))):
            opt = torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.01)
            opt.step()
        res["stepped"] = {k: v.clone() for k, v in D.full_state_dict(model).items()}
        res["ref_stepped"] = {k: v.detach().clone() for k, v in ref.state_dict().items()}
        res["export_keys"] = sorted(D.full_state_dict(model, cpu_offload=True))
        res["hf_keys"] = sorted(tiny_model_and_tokenizer(seed=0)[0].state_dict())
    torch.save(res, Path(out) / f"rank{rank}.pt")
    D.close()


def _spawn(parallel: str, tmp_path: Path) -> list[dict]:
    import torch.multiprocessing as mp
    mp.start_processes(_worker, args=(parallel, _free_port(), str(tmp_path)), nprocs=2, start_method="spawn")
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1)]


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


@pytest.mark.slow  # ~70 s each on a loaded 2-core box (2 spawned processes importing transformers)
@pytest.mark.parametrize("parallel", ["ddp", "fsdp2"])
def test_distributed_gradients_equal_the_single_process_token_mean(parallel, tmp_path):
    res = _spawn(parallel, tmp_path)
    assert res[0]["local"] != res[1]["local"] and res[0]["total"] == res[1]["total"] == res[0]["local"] + res[1]["local"]
    assert res[0]["micro"] == res[1]["micro"] == 3  # rank 0 padded from 1 to 3 micro-batches
    print(json.dumps({"parallel": parallel, "tokens_per_rank": [r["local"] for r in res],
                      "max_grad_diff": max(_max_diff(r["dist"], r["ref"]) for r in res),
                      "naive_max_grad_diff": min(_max_diff(r["naive"], r["ref"]) for r in res),
                      **({"norm": res[0]["norm"], "ref_norm": res[0]["ref_norm"],
                          "adamw_max_diff": max(_max_diff(r["stepped"], r["ref_stepped"]) for r in res)}
                         if parallel == "fsdp2" else {})}))
    for r in res:
        assert _max_diff(r["dist"], r["ref"]) < 1e-6
        assert _max_diff(r["naive"], r["ref"]) > 1e-3  # guard: the per-rank mean is measurably wrong
    if parallel == "fsdp2":
        for r in res:
            assert r["ref_norm"] > 0.01  # the clip is active
            assert r["norm"] == pytest.approx(r["ref_norm"], rel=1e-6)
            assert _max_diff(r["clipped"], r["ref_clipped"]) < 1e-6
            assert _max_diff(r["stepped"], r["ref_stepped"]) < 1e-4
        assert res[0]["export_keys"] == res[0]["hf_keys"]



def _dying_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    from arpo_env.trainers import distributed as D

    info = D.init("ddp", 10.0)
    D.barrier()
    if rank == 1:
        os._exit(0)  # dies without a word, as a SIGKILLed rank does
    try:
        D.all_reduce([1.0])
        Path(out, "rank0.txt").write_text("no error")
    except D.PeerFailure as exc:
        Path(out, "rank0.txt").write_text(f"PeerFailure: {exc}")


def test_a_dead_peer_ends_a_collective_with_a_clear_error(tmp_path):
    import torch.multiprocessing as mp
    ctx = mp.start_processes(_dying_worker, args=(_free_port(), str(tmp_path)), nprocs=2, start_method="spawn",
                             join=False)
    done = wait_until(lambda: ctx.join(timeout=1), timeout=120)  # a hang guard: gloo's timeout is 10 s
    for proc in ctx.processes:
        if proc.is_alive():
            proc.kill()
    assert done, "rank 0 hung on a dead peer"
    text = (tmp_path / "rank0.txt").read_text()
    assert text.startswith("PeerFailure: rank 0: all_reduce(sum) failed: another rank died"), text
    assert "resumes from the newest complete checkpoint" in text

TINY = dict(model="tiny", env_id="test/DigitsCalculator-v0", imports=["tests.helpers.dist_replay"],
            prompts_per_step=3, rollout=BranchingConfig(rollouts_per_prompt=4, initial_rollouts=2),
            max_response_tokens=40, max_turn_tokens=16, micro_batch_size=2, lr=1e-3, progress=False,
            tensorboard=False, samples_per_step=0, dist_timeout_s=120.0)


def _torchrun(nproc: int, cfg_path: Path, **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "arpo_env.cli", "train", "--config", str(cfg_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _params(run: Path, step: int) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(str(run / "checkpoints" / f"step_{step:08d}" / "model.safetensors"))


def _train(tmp_path: Path, name: str, nproc: int, steps: int, **kw) -> tuple[Path, str]:
    out = tmp_path / name
    TrainConfig(**{**TINY, **kw}, steps=steps, save_every=1, output_dir=str(out)).to_yaml(tmp_path / f"{name}.yaml")
    proc = _torchrun(nproc, tmp_path / f"{name}.yaml")
    text, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, text[-4000:]
    assert text.count(f"done: step {steps}") == 1, text[-2000:]  # only rank 0 reports
    return out, text


@pytest.mark.slow
def test_torchrun_two_ranks_end_with_the_parameters_of_one(tmp_path):
    """World size 1 for 3 steps; DDP on 2 ranks for 2; FSDP2 on 2 ranks for 2, then resumed from its
    sharded checkpoint for a 3rd: the same rollouts (replayed) give the same parameters and metrics."""
    from arpo_env.agents.testing import tiny_model_and_tokenizer

    ws1, _ = _train(tmp_path, "ws1", 1, 3)
    ddp, _ = _train(tmp_path, "ddp", 2, 2)
    fsdp, _ = _train(tmp_path, "fsdp2", 2, 2, parallel="fsdp2")
    fsdp, text = _train(tmp_path, "fsdp2", 2, 3, parallel="fsdp2")
    assert "resumed from" in text and "at step 2" in text
    assert (fsdp / "checkpoints" / "step_00000003" / "dcp").is_dir()
    one = read_metrics(ws1 / "metrics.jsonl")
    assert all(r["world_size"] == 1 for r in one)
    for run in (ddp, fsdp):
        rows = read_metrics(run / "metrics.jsonl")
        assert [r["world_size"] for r in rows] == [2] * len(rows) and [r["step"] for r in rows] == list(range(1, len(rows) + 1))
        for a, b in zip(one, rows):
            assert (b["prompts"], b["leaves"]) == (a["prompts"], a["leaves"]) == (3, 12)  # the global step
            for key in ("reward", "trained_tokens", "response_tokens", "branches", "generated_tokens"):
                assert b[key] == pytest.approx(a[key], rel=1e-9), key  # the same rollouts, reduced over ranks
            assert b["loss"] == pytest.approx(a["loss"], abs=1e-6)
            assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-5)
    init = tiny_model_and_tokenizer(seed=0)[0].state_dict()
    p2, p3 = _params(ws1, 2), _params(ws1, 3)
    moved = max((p2[k] - init[k]).abs().max().item() for k in p2)
    diffs = {"ddp_step2": max((p2[k] - v).abs().max().item() for k, v in _params(ddp, 2).items()),
             "fsdp2_resumed_step3": max((p3[k] - v).abs().max().item() for k, v in _params(fsdp, 3).items())}
    print(json.dumps({"max_param_moved": moved, "max_param_diff_vs_ws1": diffs}))
    assert moved > 1e-3 and max(diffs.values()) < 1e-5


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the torchrun worker of ``rank`` (a child of ``parent`` whose environment says so)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            env = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(stat.parent.name)
    return None


@pytest.mark.slow
def test_torchrun_rank_sigkilled_resumes_from_the_newest_complete_checkpoint(tmp_path):
    out, cfg = tmp_path / "run", tmp_path / "run.yaml"
    TrainConfig(**TINY, steps=4, save_every=1, output_dir=str(out), lora=True, lora_r=4).to_yaml(cfg)  # DDP + LoRA
    proc = _torchrun(2, cfg)
    wait_until(lambda: latest_checkpoint(out / "checkpoints") is not None or proc.poll() is not None, timeout=300)
    victim = _rank_pid(proc.pid, 1)
    assert proc.poll() is None and victim is not None
    os.kill(victim, signal.SIGKILL)
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0  # torchrun ends the run when a rank dies
    killed_at = int(json.loads((latest_checkpoint(out / "checkpoints") / "state.json").read_text())["step"])
    assert 1 <= killed_at < 4, text[-3000:]
    proc = _torchrun(2, cfg)
    text, _ = proc.communicate(timeout=400)
    assert proc.returncode == 0, text[-4000:]
    resumed = [line for line in text.splitlines() if "resumed from" in line and "at step" in line]
    assert len(resumed) == 1 and f"at step {killed_at}" in resumed[0], text[-3000:]
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # no duplicated or missing step
    state = json.loads((latest_checkpoint(out / "checkpoints") / "state.json").read_text())
    assert (state["step"], state["data_pos"], state["world_size"], state["parallel"]) == (4, 12, 2, "ddp")
    names = {p.name for p in latest_checkpoint(out / "checkpoints").iterdir()}
    assert {"model.safetensors", "optimizer.pt", "rank_00000.json", "rank_00001.pt", "config.json", "adapter"} <= names


def test_arpo_train_nproc_relaunches_itself_under_torchrun(monkeypatch):
    from arpo_env.trainers import cli

    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd: calls.append(cmd) or 3)
    assert cli.launch(2, ["train", "--nproc", "2", "--config", "r.yaml", "--nproc=2", "--steps", "4"]) == 3
    assert calls == [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                      "-m", "arpo_env.cli", "train", "--config", "r.yaml", "--steps", "4"]]
