"""An example preset pack: what a third party writes to add models to kaito."""

from __future__ import annotations

from kaito import Preset

_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def presets() -> list[Preset]:
    """The presets of this pack (the `kaito.presets` entry point)."""
    return [
        Preset(
            name="smollm2-135m-instruct",
            hf_id="HuggingFaceTB/SmolLM2-135M-Instruct",
            family="smollm2",
            model_type="llama",
            architecture="LlamaForCausalLM",
            parameters=134_515_008,
            weight_bytes=269_060_552,
            dtype="bfloat16",
            layers=30,
            hidden_size=576,
            attention_heads=9,
            kv_heads=3,
            head_dim=64,
            context_length=8192,
            runtimes=("hf", "vllm"),
            supports_tuning=True,
            supports_distributed=False,
            chat_template=_CHATML,
            disk_gib=10,
        )
    ]
