"""Benchmark one ARPO and one GRPO training step on the same model and batch; prints JSON.

Per algorithm: rollout tokens/s (tokens the backend generated / rollout wall time), update tokens/s
(sequence tokens forwarded and back-propagated / update wall time, old log-probs included), the share of
model tokens saved by shared prefixes (1 - tokens generated once per tree node / tokens over all leaves),
branches, tool calls per sample.

    python bench/train_step.py                      # tiny random model on CPU (default sizes are small)
    python bench/train_step.py --model PATH --prompts 8 --generations 8 --completion-tokens 256 --vs-trl

``--nproc N`` also times the update alone at world size 1 and N (``torchrun --standalone`` runs of
this script, gloo on CPU, nccl on GPUs; each rank rolls out its share of the prompts): update tokens/s of
the global batch (every rank's sequence tokens / the slowest rank's update time; median of ``--repeats``
updates after one warm-up) and the ratio. ``--rollout-backend ''`` skips the rollout part.

    python bench/train_step.py --nproc 2 --prompts 4 --algorithms grpo --rollout-backend ''

``--rollout-backend hf,vllm`` runs the same steps (same prompts, seed and model) with each rollout engine
(:mod:`arpo_env.trainers.rollout_engine`; ``vllm`` needs a Python with vLLM: scripts/setup_vllm_venv.sh),
rollout tokens/s as the median of ``--repeats`` rollouts of the same batch, and adds the median seconds of
one verified weight push per sync route (``in_process``, ``disk``, ``http`` to a dev-mode ``vllm serve``
started on 127.0.0.1; the ``hf`` engine pushes nothing) and the rollout-vs-trainer log-prob gap. vLLM's CPU
attention refuses the tiny model (head_dim 16): use ``--model embedded`` (SmolLM2 + its tool adapter) or a
model folder. Everything in one run (CPU, the vLLM venv; the in-process engine uses ``OMP_NUM_THREADS``
threads, ``vllm serve`` binds ``VLLM_CPU_OMP_THREADS_BIND``):

    OMP_NUM_THREADS=2 VLLM_CPU_OMP_THREADS_BIND=0-1 VLLM_CPU_KVCACHE_SPACE=1 VENV/bin/python bench/train_step.py \
      --model embedded --env-id arpo/Python-v0 --rollout-backend hf,vllm --algorithms grpo --nproc 2

``--vs-trl`` also times TRL's GRPOTrainer (one step, same prompts x generations, completion length, no KL)
where ``trl`` is installed; otherwise the JSON says it was skipped. The issue's anchor (H100, SmolLM2-135M
shape, bf16, 8 x 8, 256 tokens): TRL 1.16 takes 9.3 s per step.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_pushes(tr, folder: str, repeats: int = 3, http: bool = True) -> dict:
    """Median seconds of one verified push per sync route into ``tr``'s engine: ``in_process`` (reload from
    tensors), ``disk`` (a new version folder, reload from it) and ``http`` (the folder, then a dev-mode
    ``vllm serve`` on 127.0.0.1 started from the engine's export: pause, reload, cache reset, resume, probe
    log-probs checked against the trainer's); the ``hf`` engine only records the version (``engine``)."""
    import pathlib
    import socket

    from arpo_env.trainers.rollout_engine import ServerRollouts, VLLMRollouts, policy_tensors
    from arpo_env.trainers.weight_sync import DiskSync
    version = iter(range(1, 10_000))
    if not isinstance(tr.engine, VLLMRollouts):
        return {"engine": _median_seconds(lambda: tr.engine.push(tr.model, next(version)), repeats)}
    disk = DiskSync(tr.engine.llm, folder)
    out = {"in_process": _median_seconds(lambda: tr.engine.push(tr.model, next(version)), repeats),
           "disk": _median_seconds(lambda: disk.push(policy_tensors(tr.model), next(version)), repeats)}
    if http:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        server = ServerRollouts(tr.model, tr.tokenizer, pathlib.Path(folder) / "server", device_type="cpu",
                                options={"servers": 1, "port": port, "python": sys.executable,
                                         "max_model_len": tr.cfg.vllm_kwargs.get("max_model_len", 2048)})
        try:
            out["http"] = _median_seconds(lambda: server.push(tr.model, next(version)), repeats)
        finally:
            server.close()
    return out


def run_algorithm(args, algorithm: str, backend: str = "hf") -> dict:
    import torch

    from arpo_env.trainers.config import BranchingConfig, TrainConfig
    from arpo_env.trainers.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(model=None if args.model == "embedded" else args.model, env_id=args.env_id, prompts_per_step=args.prompts,
                          rollout=BranchingConfig(algorithm=algorithm, rollouts_per_prompt=args.generations,
                                                  initial_rollouts=max(1, args.generations // 2)),
                          max_response_tokens=args.completion_tokens, max_turn_tokens=args.turn_tokens,
                          micro_batch_size=args.micro_batch_size, steps=0, output_dir=tmp, tensorboard=False,
                          progress=False, resume=False, seed=args.seed, temperature=1.0, rollout_backend=backend,
                          vllm_kwargs={"max_model_len": args.max_model_len} if backend != "hf" else {})
        model = tokenizer = None
        if args.model == "tiny" and args.stop_boost:  # a random model that does end turns with tool tags
            from arpo_env.agents.testing import tiny_model_and_tokenizer
            model, tokenizer = tiny_model_and_tokenizer(seed=args.seed, stop_boost=args.stop_boost)
        tr = Trainer(cfg, model=model, tokenizer=tokenizer)
        tasks = [tr.tasks.get(i) for i in range(args.prompts)]
        if args.warmup:
            tr.collect(tasks[:1])
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        steps = []  # (rollout, update, step) seconds per timed step; the first of several is warm-up
        rates = []
        for _ in range(args.repeats + (1 if args.repeats > 1 else 0)):
            sync()
            t0 = time.perf_counter()
            batch = tr.collect(tasks)
            sync()
            t1 = time.perf_counter()
            rates.append(batch.stats.generated_tokens / (t1 - t0))
            seqs, _ = tr.build_sequences(batch)
            stats = tr.update(seqs)
            sync()
            t2 = time.perf_counter()
            steps.append((t1 - t0, t2 - t1, t2 - t0))
        if len(steps) > 1:
            steps, rates = steps[1:], rates[1:]
        med = [statistics.median(s[k] for s in steps) for k in range(3)]
        prompt_ids = [t.leaves[0].token_ids[:t.leaves[0].prompt_len] for t in batch.trees]
        pushes = time_pushes(tr, tmp + "/pushes", args.repeats, args.http_push) if args.time_pushes else {}
        tr.close()
    total = sum(t.generated_tokens()[0] for t in batch.trees)
    unique = sum(t.generated_tokens()[1] for t in batch.trees)
    seq_tokens = sum(len(s["ids"]) for s in seqs)
    leaves = [leaf for t in batch.trees for leaf in t.leaves]
    return {"rollout_seconds": med[0], "update_seconds": med[1], "step_seconds": med[2], "timed_steps": steps,
            "generated_tokens": batch.stats.generated_tokens,
            "rollout_tokens_per_s": statistics.median(rates), "rollout_tokens_per_s_repeats": rates,
            "update_tokens": seq_tokens, "update_tokens_per_s": seq_tokens / med[1],
            "packed": stats.get("packed"), "pack_shared_share": stats.get("pack_shared_share"),
            "old_logprob_pass": stats.get("old_logprob_pass"), "prompt_ids": prompt_ids,
            "leaf_model_tokens": total, "prefix_saved_share": 1 - unique / total if total else 0.0,
            "branches": batch.stats.branches, "rounds": batch.stats.rounds,
            "tool_calls_per_sample": sum(len(leaf.tool_calls) for leaf in leaves) / len(leaves),
            "trained_tokens": stats["trained_tokens"], "rollout_logprob_gap": stats["rollout_logprob_gap"],
            "entropy_source": leaves[0].entropy_source.value, "push_seconds": pushes}


def dist_worker(args) -> None:
    """One rank of a ``--nproc`` measurement (run by torchrun); rank 0 prints one JSON line."""
    import torch

    from arpo_env.trainers import distributed as D
    from arpo_env.trainers.config import BranchingConfig, TrainConfig
    from arpo_env.trainers.trainer import Trainer

    cfg = TrainConfig(model=None if args.model == "embedded" else args.model, env_id=args.env_id,
                      prompts_per_step=args.prompts,
                      rollout=BranchingConfig(algorithm=args.algorithms.split(",")[0].strip(), rollouts_per_prompt=args.generations,
                                              initial_rollouts=max(1, args.generations // 2)),
                      max_response_tokens=args.completion_tokens, max_turn_tokens=args.turn_tokens,
                      micro_batch_size=args.micro_batch_size, steps=0, output_dir=args.worker, tensorboard=False,
                      progress=False, resume=False, seed=args.seed, temperature=1.0)
    tr = Trainer(cfg)
    batch = tr.collect([tr.tasks.get(i) for i in D.shard(args.prompts, tr.dist)])
    seqs, _ = tr.build_sequences(batch)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    tr.update(seqs)  # warm-up (allocations, DDP buckets); then the timed updates on the same sequences
    times = []
    for _ in range(args.repeats):
        if tr.dist.enabled:
            D.barrier()
        sync()
        t0 = time.perf_counter()
        tr.update(seqs)
        sync()
        elapsed = time.perf_counter() - t0
        times.append(D.all_reduce([elapsed], op="max")[0] if tr.dist.enabled else elapsed)
    elapsed = statistics.median(times)
    tokens = float(sum(len(s["ids"]) for s in seqs))
    if tr.dist.enabled:
        tokens = D.all_reduce([tokens])[0]
    if tr.dist.is_main:
        print("RESULT " + json.dumps({"world_size": tr.dist.world_size, "update_tokens": tokens,
                                      "update_seconds": elapsed, "update_tokens_per_s": tokens / elapsed}))
    tr.close()


def run_nproc(args) -> dict:
    """Update tokens/s at world size 1 and ``args.nproc``, side by side (see the module docstring)."""
    import subprocess

    out: dict = {}
    for n in (1, args.nproc):
        with tempfile.TemporaryDirectory() as tmp:
            argv, skip = [], False  # without --nproc (torchrun would take it for --nproc-per-node)
            for a in sys.argv[1:]:
                if not skip and a != "--nproc" and not a.startswith("--nproc="):
                    argv.append(a)
                skip = a == "--nproc"
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                   __file__, *argv, "--worker", tmp]
            res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        line = next((x for x in res.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"world size {n} failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
        out[f"ws{n}"] = json.loads(line[len("RESULT "):])
    out["speedup"] = out[f"ws{args.nproc}"]["update_tokens_per_s"] / out["ws1"]["update_tokens_per_s"]
    return out


def run_trl(args, prompt_ids: list[list[int]]) -> dict:
    """TRL's GRPOTrainer on OUR prompts: the prompt token ids our rollout used (same chat template, tool
    descriptions and questions), decoded to text that TRL tokenizes back (checked to give the same ids);
    same generations, completion length, dtype, optimizer (AdamW, lr), no KL, and gradient checkpointing as
    ours (off; TRL's default is on, which recomputes the forward in the backward). Median of the steps after
    the first (``--repeats``)."""
    if importlib.util.find_spec("trl") is None or importlib.util.find_spec("datasets") is None:
        return {"skipped": "trl (and datasets) are not installed: pip install trl"}
    import torch
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from arpo_env.trainers.config import TrainConfig
    from arpo_env.trainers.trainer import load_policy

    cfg = TrainConfig(model=None if args.model == "embedded" else args.model)
    model, tok = load_policy(cfg, torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    texts = [tok.decode(ids, skip_special_tokens=False) for ids in prompt_ids]
    same = all(tok(t, add_special_tokens=False).input_ids == list(ids) for t, ids in zip(texts, prompt_ids))
    data = Dataset.from_list([{"prompt": t} for t in texts])
    with tempfile.TemporaryDirectory() as tmp:
        # TRL's micro-batch = ours (per-device batch x accumulation = the rollout batch, one optimizer step):
        # with the whole rollout batch as one micro-batch TRL ran out of 24 GB at 4 x 8 x 128 (logits in fp32)
        batch = args.prompts * args.generations
        micro = max(d for d in range(1, min(args.micro_batch_size, batch) + 1) if batch % d == 0)
        conf = GRPOConfig(output_dir=tmp, per_device_train_batch_size=micro,
                          gradient_accumulation_steps=batch // micro, num_generations=args.generations,
                          max_completion_length=args.completion_tokens,
                          beta=0.0, bf16=torch.cuda.is_available(), max_steps=1 + max(1, args.repeats),
                          logging_steps=1, report_to=[], learning_rate=cfg.lr, weight_decay=cfg.weight_decay,
                          optim="adamw_torch_fused", temperature=1.0, shuffle_dataset=False,
                          gradient_checkpointing=cfg.gradient_checkpointing)  # TRL defaults to True; ours to False
        trainer = GRPOTrainer(model=model, processing_class=tok, args=conf, train_dataset=data,
                              reward_funcs=[lambda completions, **kw: [float(len(c)) for c in completions]])
        times = []

        from transformers import TrainerCallback

        class Timer(TrainerCallback):
            def on_step_begin(self, *a, **k):
                times.append(time.perf_counter())

            def on_step_end(self, *a, **k):
                times[-1] = time.perf_counter() - times[-1]
        trainer.add_callback(Timer())
        gen_times: list[float] = []
        completion_tokens: list[int] = []
        generate_and_score = trainer._generate_and_score_completions

        def timed_generation(inputs):  # TRL's rollout: generation, rewards, advantages (one call per step)
            t0 = time.perf_counter()
            batch = generate_and_score(inputs)
            gen_times.append(time.perf_counter() - t0)
            completion_tokens.append(int(batch["completion_mask"].sum()))
            return batch
        trainer._generate_and_score_completions = timed_generation
        with contextlib.redirect_stdout(sys.stderr):  # TRL prints its logs; stdout carries only our JSON
            trainer.train()
    step = statistics.median(times[1:])  # the steps after the first (warm-up)
    rollout = statistics.median(gen_times[1:])
    return {"step_seconds": step, "timed_steps": times[1:], "rollout_seconds": rollout,
            "update_seconds": statistics.median([t - g for t, g in zip(times[1:], gen_times[1:])]),
            "generated_tokens": int(statistics.median(completion_tokens[1:])),
            "prompt_tokens": [len(i) for i in prompt_ids], "prompt_tokens_match": same,
            "micro_batch_size": micro, "gradient_accumulation_steps": batch // micro}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--stop-boost", type=float, default=0.0,
                   help="tiny model only: raise closing-tag logits so random turns end in tool calls "
                        "(without it a random model almost never calls a tool, so ARPO never branches)")
    p.add_argument("--env-id", default="arpo/Calculator-v0")
    p.add_argument("--prompts", type=int, default=2)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--completion-tokens", type=int, default=64)
    p.add_argument("--turn-tokens", type=int, default=32)
    p.add_argument("--micro-batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--warmup", action="store_true", help="one untimed rollout first (compilation, caches)")
    p.add_argument("--vs-trl", action="store_true")
    p.add_argument("--nproc", type=int, default=0, help="also time the update at world size 1 and NPROC")
    p.add_argument("--repeats", type=int, default=3,
                   help="timed steps per side and pushes per route (medians; with > 1 an extra first step is warm-up)")
    p.add_argument("--no-http-push", dest="http_push", action="store_false",
                   help="vllm: skip timing HTTP pushes to a started vllm serve")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--rollout-backend", default="hf",
                   help="comma-separated rollout engines: hf, vllm ('' with --nproc: the update comparison only)")
    p.add_argument("--algorithms", default="arpo,grpo", help="comma-separated: arpo, grpo (--nproc: the first)")
    p.add_argument("--max-model-len", type=int, default=2048, help="vllm engines' max_model_len")
    p.add_argument("--no-time-pushes", dest="time_pushes", action="store_false",
                   help="skip timing a weight push per sync route")
    args = p.parse_args()
    if args.worker:
        return dist_worker(args)
    import torch
    out = {"bench": "train_step", "device": "cuda" if torch.cuda.is_available() else "cpu",
           "platform": platform.platform(), "torch": torch.__version__, "args": vars(args),
           "cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    if args.nproc:
        out["update_world_size"] = run_nproc(args)
    backends = [b.strip() for b in args.rollout_backend.split(",") if b.strip()]
    for algo in [a.strip() for a in args.algorithms.split(",") if a.strip()]:
        runs = {b: run_algorithm(args, algo, b) for b in backends}
        if len(backends) == 1:
            out[algo] = runs[backends[0]]
        else:  # side by side on the same batch: speed as a ratio to the first engine
            base = runs[backends[0]]["rollout_tokens_per_s"]
            out[algo] = {**runs, "rollout_tokens_per_s_ratio": {b: r["rollout_tokens_per_s"] / base
                                                                for b, r in runs.items()}}
    if args.vs_trl:
        ours = out.get("grpo") or {}
        if "prompt_ids" not in ours:
            raise SystemExit("--vs-trl needs the grpo algorithm with one rollout backend (it gives TRL its prompts)")
        print(json.dumps({"grpo": {k: v for k, v in ours.items() if k != "prompt_ids"}}), file=sys.stderr, flush=True)
        out["trl"] = run_trl(args, ours["prompt_ids"])
        if "step_seconds" in out["trl"]:
            trl = out["trl"]
            out["grpo_speed_vs_trl"] = trl["step_seconds"] / ours["step_seconds"]
            out["update_speed_vs_trl"] = trl["update_seconds"] / ours["update_seconds"]
            out["rollout_tokens_per_s_vs_trl"] = ours["rollout_tokens_per_s"] / (
                trl["generated_tokens"] / trl["rollout_seconds"])
            # TRL always decodes to the length limit (its reward has no stop); ours stops at tool calls and
            # answers. Our step with its rollout scaled to TRL's generated tokens at our rollout rate:
            scaled = trl["generated_tokens"] / ours["rollout_tokens_per_s"]
            out["grpo_speed_vs_trl_token_normalized"] = trl["step_seconds"] / (scaled + ours["update_seconds"])
    for algo in ("arpo", "grpo"):
        if isinstance(out.get(algo), dict):
            out[algo].pop("prompt_ids", None)
    out["loadavg_end"] = os.getloadavg()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
