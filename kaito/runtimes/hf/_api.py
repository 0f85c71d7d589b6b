"""The wire formats: request bodies of the three generation endpoints, validated strictly.

Validation is strict on purpose: a string where a number belongs, an unknown field, `n: 2` or
`logprobs: true` is a 400 that names the field, never a silent guess and never a 500. Unknown
OpenAI fields are refused ("unsupported parameter") rather than ignored, because ignoring
`tools` or `response_format` would return something the client did not ask for; the few fields
that only label a request (`user`, `metadata`, `store`, `service_tier`) are accepted and ignored.

Beyond OpenAI's fields, the vLLM-style extensions `top_k`, `repetition_penalty`, `min_tokens` and
`ignore_eos` are accepted (the `openai` client sends them through `extra_body`).

The legacy `/chat` body follows the seed's API: `prompt` or `messages`, plus `generate_kwargs`
in transformers' `generate` vocabulary, with upstream kaito's defaults (sampling with top-k 10).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class RequestError(ValueError):
    """A request the server will not run; `param` names the offending field."""

    def __init__(self, message: str, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.status = status


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: str = Field(min_length=1)
    content: str | list[TextPart] | None = None
    name: str | None = None

    def as_template_input(self) -> dict[str, str]:
        """The message as chat templates expect it: role and plain-text content."""
        if isinstance(self.content, list):
            content = "".join(part.text for part in self.content)
        else:
            content = self.content or ""
        message = {"role": self.role, "content": content}
        if self.name is not None:
            message["name"] = self.name
        return message


class StreamOptions(_Strict):
    include_usage: bool = False


class ResponseFormat(_Strict):
    type: Literal["text"]


class _OpenAIRequest(_Strict):
    model: str | None = None
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = None
    max_tokens: int | None = Field(None, ge=1)
    # accepted and ignored: they label the request, they do not change the answer
    user: str | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    service_tier: str | None = None
    # vLLM-style extensions
    top_k: int | None = Field(None, ge=-1)
    repetition_penalty: float | None = Field(None, gt=0.0)
    min_tokens: int | None = Field(None, ge=0)
    ignore_eos: bool = False

    @field_validator("n")
    @classmethod
    def _n(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only n=1 is supported; send the request several times instead")
        return value

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _bias(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for token, bias in (value or {}).items():
            if not (token.isascii() and token.isdigit()):
                raise ValueError(f"keys must be token ids, got {token!r}")
            if not -100.0 <= bias <= 100.0:
                raise ValueError(f"biases must be between -100 and 100, got {bias}")
        return value

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


def _unsupported(value: Any, what: str) -> Any:
    if value not in (None, False):
        raise ValueError(f"{what} are not supported by this server")
    return value


class ChatCompletionRequest(_OpenAIRequest):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None

    @field_validator("logprobs", "top_logprobs")
    @classmethod
    def _logprobs(cls, value: Any) -> Any:
        return _unsupported(value, "log probabilities")


class CompletionRequest(_OpenAIRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    best_of: int | None = None
    logprobs: int | None = None
    suffix: str | None = None

    @field_validator("logprobs")
    @classmethod
    def _logprobs(cls, value: Any) -> Any:
        return _unsupported(value, "log probabilities")

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, value: Any) -> Any:
        return _unsupported(value or None, "suffixes (insertion)")

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, value: int | None) -> int | None:
        if value is not None and value != 1:
            raise ValueError("only best_of=1 is supported")
        return value

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, value: Any) -> Any:
        if isinstance(value, list) and not value:
            raise ValueError("must not be an empty list")
        if isinstance(value, list) and any(isinstance(p, list) and not p for p in value):
            raise ValueError("token id lists must not be empty")
        return value


class GenerateKwargs(_Strict):
    """The `generate_kwargs` of the legacy `/chat` API (transformers' names)."""

    max_length: int | None = Field(None, ge=1)
    max_new_tokens: int | None = Field(None, ge=1)
    min_length: int = Field(0, ge=0)
    min_new_tokens: int = Field(0, ge=0)
    do_sample: bool = True
    temperature: float = Field(1.0, ge=0.0)
    top_k: int = Field(10, ge=0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    typical_p: float = Field(1.0, ge=1.0, le=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0)
    num_beams: int = Field(1, ge=1, le=1)
    num_return_sequences: int = Field(1, ge=1, le=1)
    early_stopping: bool = False
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    seed: int | None = None
    stop_strings: str | list[str] | None = None


class LegacyChatRequest(_Strict):
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)
    generate_kwargs: GenerateKwargs = Field(default_factory=GenerateKwargs)
    return_full_text: bool = True
    clean_up_tokenization_spaces: bool = False


_TYPE_TAGS = {"str", "int", "float", "bool", "none", "dict", "list"}


def _param(loc: tuple[int | str, ...]) -> str:
    parts = [
        str(p)
        for p in loc
        if isinstance(p, int)
        or not (p in _TYPE_TAGS or "[" in p or p[:1].isupper() or p.startswith("literal"))
    ]
    return ".".join(parts)


_M = TypeVar("_M", bound=BaseModel)


def parse(model: type[_M], body: Any) -> _M:
    """`body` as `model`, or a `RequestError` naming the first bad field."""
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        param = _param(errors[0]["loc"])
        if errors[0]["type"] == "extra_forbidden":
            raise RequestError(f"unsupported parameter: {param}", param) from None
        messages = []
        for error in errors:
            if _param(error["loc"]) == param and error["msg"] not in messages:
                messages.append(error["msg"].removeprefix("Value error, "))
        if errors[0]["type"] == "missing":
            raise RequestError(f"missing required parameter: {param}", param) from None
        raise RequestError(f"invalid {param}: " + "; or ".join(messages), param) from None
