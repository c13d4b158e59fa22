"""``merge_adapter``: a LoRA adapter merged into a model leaves a plain model whose weights changed by the
adapter's delta and are all trainable again (peft freezes them while the adapter is attached)."""
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from arpo_env.agents.models import merge_adapter  # noqa: E402
from arpo_env.agents.testing import tiny_model_and_tokenizer  # noqa: E402


def test_merged_model_is_plain_changed_and_trainable(tmp_path):
    model, _ = tiny_model_and_tokenizer(seed=0)
    lora = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                      init_lora_weights=False))
    lora.save_pretrained(str(tmp_path / "adapter"))
    base, _ = tiny_model_and_tokenizer(seed=0)
    before = {k: v.clone() for k, v in base.state_dict().items()}
    merged = merge_adapter(base, tmp_path / "adapter")
    assert not isinstance(merged, peft.PeftModel)
    assert merged.arpo_adapter["name"] == "adapter" and len(merged.arpo_adapter["sha256"]) == 64
    changed = [k for k, v in merged.state_dict().items() if not torch.equal(v, before[k])]
    assert any("q_proj" in k for k in changed)
    params = list(merged.parameters())
    assert params and all(p.requires_grad for p in params)
    torch.optim.AdamW([p for p in params if p.requires_grad], lr=1e-3)  # full fine-tuning has parameters
