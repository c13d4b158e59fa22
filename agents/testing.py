"""Tiny models for tests: a randomly initialised Llama or Qwen2 and a BPE tokenizer trained on the spot.

``tiny_model_and_tokenizer()`` builds both in well under a second on CPU, downloads nothing, and exercises
the real code paths (chat template, KV cache, left padding, stop strings) of the ``hf`` backend.

The tokenizer is a byte-level BPE trained with the ``tokenizers`` library on a small corpus that contains
the ARPO tag vocabulary. The tags (``<calculator>``, ``</answer>``, ``<result>`` ...) are also added as
single (non-special) tokens, so that a random model samples a closing tag now and then and multi-turn
episodes happen in tests. ChatML special tokens (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``)
and a ChatML chat template are included. With ``arch="llama"`` the tokenizer also adds a BOS token
``<s>`` when encoding (as Llama tokenizers do), which is the trap ``Agent.observation_ids`` must avoid.

Not covered: anything about output quality (the weights are random).
"""
from __future__ import annotations

from typing import Any

from arpo_env.extras import require

TAGS = ("think", "answer", "result", "calculator", "python", "search", "browse", "tool_call")
"""Tag names whose opening and closing forms get single tokens."""

CHATML_TEMPLATE = (
    "{% if bos_token is defined and add_bos %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""ChatML, as SmolLM2 and Qwen2 use it (the Llama variant prepends ``<s>``)."""

_CORPUS = [
    "You are a helpful assistant. Solve the problem step by step. Reason inside <think> </think>.",
    "You can call tools. Write a call as <NAME>argument</NAME>; the result comes back as <result> ... </result>.",
    "Give the final answer as <answer> ... \\boxed{ANSWER} </answer>.",
    "<think>I will compute it.</think><calculator>(12.5 + 3) * 4</calculator>",
    "<result>\n62\n</result>",
    "<think>Done.</think><answer>The answer is \\boxed{62}</answer>",
    "What is 17 * 23? What is 123 + 456 - 789? The capital of France is Paris.",
    "<python>print(1 + 1)</python><search>capital of France</search><browse>https://example.com</browse>",
    "Error: the budget of 3 tool calls is used up; the episode ends.",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 42 100 391 1000 + - * / ( ) = . , ; : ? ! ' \" { } [ ] \\",
    "The quick brown fox jumps over the lazy dog. Numbers, words and tags: a b c d e f g h i j k l m n o p.",
]


def tiny_tokenizer(*, vocab_size: int = 320, add_bos: bool = False) -> Any:
    """A ``PreTrainedTokenizerFast`` trained now (deterministic), with a ChatML chat template.

    ``add_bos=True`` makes ``encode`` prepend ``<s>`` (Llama style) and the template start with it.
    """
    require("agents", "tokenizers", needed_by="the tiny test tokenizer")
    require("agents", "transformers", needed_by="the tiny test tokenizer")
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tags = [t for name in TAGS for t in (f"<{name}>", f"</{name}>")]
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in tags])
    if add_bos:
        bos = tok.token_to_id("<s>")
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                           special_tokens=[("<s>", bos)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 bos_token="<s>" if add_bos else None)
    hf.chat_template = CHATML_TEMPLATE.replace("add_bos", "true" if add_bos else "false")
    return hf


def tiny_model_and_tokenizer(arch: str = "llama", seed: int = 0, *, hidden_size: int = 64,
                             num_layers: int = 2, num_heads: int = 4, num_kv_heads: int = 2,
                             vocab_size: int = 320, stop_boost: float = 0.0, dtype: Any = None,
                             ) -> tuple[Any, Any]:
    """A randomly initialised causal LM of family ``arch`` (``llama`` or ``qwen2``) and its tokenizer.

    The model is in eval mode, float32 unless ``dtype`` says otherwise, on CPU; the same ``seed`` gives the
    same weights. Its vocabulary matches the tokenizer exactly (no unused rows), and its generation config
    knows the EOS and pad ids.

    ``stop_boost`` > 0 raises the logits of the closing-tag tokens (``</calculator>``, ``</answer>`` ...)
    by about that much in every context, so that a random model ends turns with stop strings and plays
    multi-turn episodes (3.0 makes each closing tag ~20x likelier). It is built into the weights (hidden
    dimension 0 of the embeddings is a constant, read by the output layer for those tokens only), so the
    model stays an ordinary checkpoint.
    """
    require("agents", "torch", needed_by="the tiny test model")
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    tok = tiny_tokenizer(vocab_size=vocab_size, add_bos=(arch == "llama"))
    common = dict(vocab_size=len(tok), hidden_size=hidden_size, intermediate_size=hidden_size * 2,
                  num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_kv_heads,
                  max_position_embeddings=2048, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                  bos_token_id=tok.bos_token_id, tie_word_embeddings=False)
    if arch == "llama":
        config = LlamaConfig(**common)
    elif arch == "qwen2":
        config = Qwen2Config(**common)
    else:
        raise ValueError(f"arch must be 'llama' or 'qwen2', got {arch!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.float32)
        # the default init (std 0.02) gives an almost uniform next-token distribution; a wider output layer
        # gives logits of std ~1.6, so distributions have structure (entropy well below log|V|)
        with torch.no_grad():
            model.get_output_embeddings().weight.normal_(0.0, 0.2)
            if stop_boost:
                scale = model.get_input_embeddings().weight[:, 1:].std().item()
                model.get_input_embeddings().weight[:, 0] = scale
                head = model.get_output_embeddings().weight
                head[:, 0] = 0.0
                for name in TAGS:
                    head[tok.convert_tokens_to_ids(f"</{name}>"), 0] = stop_boost
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.eval()
    return model, tok
