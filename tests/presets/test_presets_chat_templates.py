"""The packaged chat templates render each family's prompt format.

Rendered the way transformers renders `chat_template` (a sandboxed Jinja environment with
trim_blocks and lstrip_blocks) and, to show the templates do not depend on those settings, with a
plain Jinja environment too.
"""

from __future__ import annotations

from typing import Any

import pytest

from kaito.presets import builtin_chat_templates, builtin_presets

jinja2 = pytest.importorskip("jinja2")
sandbox = pytest.importorskip("jinja2.sandbox")

pytestmark = pytest.mark.timeout(30)

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello!"},
    {"role": "user", "content": "2+2?"},
]
TOKENS = {"bos_token": "<s>", "eos_token": "</s>"}


def _render(template: str, *, hf_like: bool, **context: Any) -> str:
    if hf_like:
        env = sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    else:
        env = jinja2.Environment()
    return str(env.from_string(template).render(**context))


def render(name: str, messages: list[dict[str, str]], *, generation: bool = True) -> str:
    template = builtin_chat_templates()[name]
    context = {"messages": messages, "add_generation_prompt": generation, **TOKENS}
    hf = _render(template, hf_like=True, **context)
    assert _render(template, hf_like=False, **context) == hf
    return hf


EXPECTED = {
    "phi-3": (
        "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n"
        "<|user|>\n2+2?<|end|>\n<|assistant|>\n"
    ),
    "phi-4": (
        "<|im_start|>system<|im_sep|>Be brief.<|im_end|><|im_start|>user<|im_sep|>Hi<|im_end|>"
        "<|im_start|>assistant<|im_sep|>Hello!<|im_end|><|im_start|>user<|im_sep|>2+2?<|im_end|>"
        "<|im_start|>assistant<|im_sep|>"
    ),
    "phi-4-mini": (
        "<|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>Hello!<|end|>"
        "<|user|>2+2?<|end|><|assistant|>"
    ),
    "llama-3": (
        "<s><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "mistral": "<s>[INST] Be brief.\n\nHi [/INST] Hello!</s>[INST] 2+2? [/INST]",
    "ministral-3": (
        "<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]Hi[/INST]Hello!</s>[INST]2+2?[/INST]"
    ),
    "qwen": (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
        "<|im_start|>assistant\n"
    ),
    "deepseek-r1": (
        "<s>Be brief.<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>2+2?"
        "<｜Assistant｜><think>\n"
    ),
    "gemma-3": (
        "<s><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
        "<start_of_turn>model\nHello!<end_of_turn>\n"
        "<start_of_turn>user\n2+2?<end_of_turn>\n<start_of_turn>model\n"
    ),
    "gpt-oss": (
        "<|start|>system<|message|>Reasoning: medium\n\n# Valid channels: analysis, commentary, "
        "final.<|end|><|start|>developer<|message|># Instructions\n\nBe brief.<|end|>"
        "<|start|>user<|message|>Hi<|end|>"
        "<|start|>assistant<|channel|>final<|message|>Hello!<|end|>"
        "<|start|>user<|message|>2+2?<|end|><|start|>assistant"
    ),
    "falcon": "Be brief.\n\nUser: Hi\nFalcon: Hello!\nUser: 2+2?\nFalcon:",
}


def test_every_packaged_template_is_pinned_here() -> None:
    assert set(builtin_chat_templates()) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_template_renders_the_family_format(name: str) -> None:
    assert render(name, CONVERSATION) == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_generation_prompt_is_only_added_on_request(name: str) -> None:
    with_prompt = render(name, CONVERSATION, generation=True)
    without = render(name, CONVERSATION, generation=False)
    assert with_prompt.startswith(without)
    # Templates whose format has no separate "assistant, your turn" marker render the same.
    if name not in {"mistral", "ministral-3"}:
        assert len(with_prompt) > len(without)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_single_user_turn_without_special_tokens(name: str) -> None:
    # A server that passes no bos/eos tokens still gets a well-formed prompt.
    template = builtin_chat_templates()[name]
    context = {"messages": [{"role": "user", "content": "ping"}], "add_generation_prompt": True}
    text = _render(template, hf_like=True, **context)
    assert "ping" in text
    assert "None" not in text
    assert "Undefined" not in text


def test_each_preset_carries_its_familys_template() -> None:
    catalog = builtin_presets()
    assert catalog["phi-3-mini-4k-instruct"].chat_template_name == "phi-3"
    assert catalog["phi-4"].chat_template_name == "phi-4"
    assert catalog["phi-4-mini-instruct"].chat_template_name == "phi-4-mini"
    assert catalog["llama-3.3-70b-instruct"].chat_template_name == "llama-3"
    assert catalog["mistral-7b-instruct"].chat_template_name == "mistral"
    assert catalog["ministral-3-8b-instruct"].chat_template_name == "ministral-3"
    assert catalog["qwen2.5-coder-7b-instruct"].chat_template_name == "qwen"
    assert catalog["qwen3-8b-awq"].chat_template_name == "qwen"
    assert catalog["deepseek-r1-distill-qwen-14b"].chat_template_name == "deepseek-r1"
    assert catalog["gemma-3-27b-instruct"].chat_template_name == "gemma-3"
    assert catalog["gpt-oss-120b"].chat_template_name == "gpt-oss"
    assert catalog["falcon-40b-instruct"].chat_template_name == "falcon"
