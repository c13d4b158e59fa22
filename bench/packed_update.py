"""The update flat vs trie-packed (``pack_prefixes``) on the same sequences, side by side; prints JSON.

Sequences: per prompt, the real chat prompt of ``--env-id`` (the agent's template with its tool
descriptions, taken from a 1-token rollout) plus ``--tokens`` response tokens per leaf (random ids, a tool
span masked out every 40 tokens). ``grpo``: ``--leaves`` independent leaves per prompt (only the prompt is
shared); ``arpo``: leaf k > 0 forks from a random earlier leaf at a random point in the last
``--fork-window`` share of the response (the branch prefixes are shared too). ``--short-prompt N`` cuts
every prompt to its last N tokens (the short-prompt setting: less sharing).

Per setting: the share of forwarded tokens packing saves, median update seconds of each (``--repeats``,
interleaved; packing forced on every micro-batch, ``auto_packs`` says
whether the default ``pack_min_gain`` would pack them), the speed ratio, loss and max |gradient difference| (both on the same weights: lr 1e-12), and
the peak RSS growth during the update on CPU (sampled every 5 ms) or ``max_memory_allocated`` on CUDA.

    python bench/packed_update.py --model embedded --prompts 2 --leaves 8 --tokens 256
"""
from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import threading
import time
from types import SimpleNamespace


def peak_during(fn, cuda: bool):
    """(result, seconds, peak memory growth in MiB) of ``fn()``."""
    import torch
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        t0 = time.perf_counter()
        out = fn()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        return out, dt, (torch.cuda.max_memory_allocated() - base) / 2**20
    import psutil
    proc, stop, peak = psutil.Process(), threading.Event(), [0]
    base = proc.memory_info().rss

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)
    th = threading.Thread(target=watch, daemon=True)
    th.start()
    t0 = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    return out, dt, max(0, peak[0] - base) / 2**20


def make_trees(rng: random.Random, prompts: list[list[int]], leaves: int, tokens: int, algorithm: str,
               fork_window: float, vocab: int):
    from arpo_env.agent import Trajectory
    from arpo_env.trainers.tree import RolloutTree

    def traj(ids, p, i, parent=None, at=None, base=None):
        mask = [0] * p + [0 if (t % 40) >= 34 else 1 for t in range(len(ids) - p)]
        lp = [0.0] * p + [-rng.random() for _ in range(len(ids) - p)]
        if base is not None:
            mask[:at], lp[:at] = base.loss_mask[:at], base.logprobs[:at]
        return Trajectory(token_ids=ids, prompt_len=p, loss_mask=mask, logprobs=lp, entropies=[1.0] * len(ids),
                          reward=rng.random(), id=i, parent=parent, branch_at=at)
    trees = []
    for prompt in prompts:
        p, out = len(prompt), []
        for i in range(leaves):
            if algorithm == "arpo" and i > 0:
                parent = out[rng.randrange(i)]
                at = p + rng.randrange(int(tokens * (1 - fork_window)), tokens - 8)
                ids = parent.token_ids[:at] + [rng.randrange(3, vocab) for _ in range(p + tokens - at)]
                out.append(traj(ids, p, i, parent.id, at, parent))
            else:
                out.append(traj(prompt + [rng.randrange(3, vocab) for _ in range(tokens)], p, i))
        trees.append(RolloutTree(out))
    return trees


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--env-id", default="arpo/Calculator-v0")
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--leaves", type=int, default=8)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--fork-window", type=float, default=0.55, help="arpo: forks in the last share of the response")
    p.add_argument("--short-prompt", type=int, default=32, help="the short-prompt setting's prompt tokens (0: skip)")
    p.add_argument("--micro-batch-size", type=int, default=8)
    p.add_argument("--algorithms", default="grpo,arpo")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args()
    import torch

    from arpo_env.trainers.config import TrainConfig
    from arpo_env.trainers.packing import estimated_gain, pack
    from arpo_env.trainers.trainer import Trainer
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(model=None if args.model == "embedded" else args.model, env_id=args.env_id,
                          prompts_per_step=args.prompts, max_response_tokens=1, max_turn_tokens=1, lr=1e-12,
                          micro_batch_size=args.micro_batch_size, steps=0, output_dir=tmp, tensorboard=False,
                          progress=False, resume=False, seed=args.seed, grad_clip=0.0)
        tr = Trainer(cfg)
        batch = tr.collect([tr.tasks.get(i) for i in range(args.prompts)])
        prompts = [t.leaves[0].token_ids[:t.leaves[0].prompt_len] for t in batch.trees]
        vocab = len(tr.tokenizer)
        settings = {"full_prompt": prompts}
        if args.short_prompt:
            settings["short_prompt"] = [q[-args.short_prompt:] for q in prompts]
        out: dict = {"bench": "packed_update", "device": "cuda" if cuda else "cpu", "platform": platform.platform(),
                     "torch": torch.__version__, "args": vars(args), "prompt_tokens": [len(q) for q in prompts],
                     "note": "CPU box shared with other jobs: ratios are side by side in one run"}
        for name, ps in settings.items():
            for algo in [a.strip() for a in args.algorithms.split(",") if a.strip()]:
                rng = random.Random(args.seed)
                trees = make_trees(rng, ps, args.leaves, args.tokens, algo, args.fork_window, vocab)
                seqs, _ = tr.build_sequences(SimpleNamespace(trees=trees))
                runs: dict = {False: [], True: []}
                first: dict = {}
                tr.cfg.pack_min_gain = 0.0  # measure packing itself; "auto_packs" says what the default would do
                rows = [s["ids"] for s in seqs]
                chunks = [rows[k:k + args.micro_batch_size] for k in range(0, len(rows), args.micro_batch_size)]
                gains = [estimated_gain(c, pack(c, max(map(len, c))).length, tr._pack_costs) for c in chunks]
                tr.update(seqs)  # warm-up (allocator, packing probe)
                for _ in range(args.repeats):
                    for packed in (False, True):
                        tr.cfg.pack_prefixes = packed
                        stats, dt, mem = peak_during(lambda s=seqs: tr.update(s), cuda)
                        runs[packed].append((dt, mem))
                        if packed not in first:
                            grads = [q.grad.detach().clone() for q in tr.model.parameters() if q.grad is not None]
                            first[packed] = (stats, grads)
                (sf, gf), (sp, gp) = first[False], first[True]
                t_flat = statistics.median(r[0] for r in runs[False])
                t_pack = statistics.median(r[0] for r in runs[True])
                out[f"{name}/{algo}"] = {
                    "flat_tokens": sum(len(s["ids"]) for s in seqs), "packed_tokens": sp["pack_forward_tokens"],
                    "shared_share": sp["pack_shared_share"], "packed": sp["packed"],
                    "estimated_gain": statistics.median(gains), "auto_packs": min(gains) >= 1.0,
                    "flat_seconds": t_flat, "packed_seconds": t_pack, "speedup": t_flat / t_pack,
                    "flat_peak_mib": statistics.median(r[1] for r in runs[False]),
                    "packed_peak_mib": statistics.median(r[1] for r in runs[True]),
                    "loss_flat": sf["loss"], "loss_packed": sp["loss"],
                    "max_abs_grad_diff": max(float((a - b).abs().max()) for a, b in zip(gf, gp)),
                    "max_abs_grad": max(float(a.abs().max()) for a in gf),
                    "repeats": {"flat": runs[False], "packed": runs[True]}}
                print(json.dumps({name + "/" + algo: out[f"{name}/{algo}"]}), flush=True)
        tr.close()
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
