"""Render a :class:`~cogem.llm.base.ChatPrompt` to the exact text a model sees.

The in-process backend renders with its own tokenizer. A client of a served model cannot see the
server's rendering, so to score options on a chat prompt it renders the prompt itself, with the
chat template of a local copy of the served model's tokenizer (:class:`ChatTemplate`), and sends
the text to ``/v1/completions``. That is exact only when the local template is the server's: the
user names it (``COGEM_LLM_CHAT_TEMPLATE``), and the trace records the rendered text.
"""

from __future__ import annotations

from typing import Any

from cogem.errors import ModelNotFoundError, UsageError
from cogem.llm.base import ChatPrompt, Prompt

__all__ = ["ChatTemplate", "chat_messages", "render_chat"]


def render_chat(tokenizer: Any, prompt: Prompt, *, model_id: str) -> str:
    """The text ``tokenizer``'s chat template makes of ``prompt`` with the assistant turn opened;
    a plain ``str`` prompt verbatim."""
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, ChatPrompt):
        raise UsageError(f"prompt must be a ChatPrompt or str, got {type(prompt).__name__}")
    if not getattr(tokenizer, "chat_template", None):
        raise UsageError(f"model {model_id!r} has no chat template; pass a plain str prompt")
    text = tokenizer.apply_chat_template(
        chat_messages(prompt), add_generation_prompt=True, tokenize=False
    )
    return str(text)


def chat_messages(prompt: ChatPrompt) -> list[dict[str, str]]:
    """The OpenAI-style message list of ``prompt``: what a chat template or chat API reads."""
    messages = [] if prompt.system is None else [{"role": "system", "content": prompt.system}]
    return [*messages, {"role": "user", "content": prompt.user}]


class ChatTemplate:
    """A served model's chat template, applied client-side. Build it with :meth:`load`."""

    def __init__(self, tokenizer: Any, source: str) -> None:
        self._tokenizer = tokenizer
        self.source = source
        """What the template was loaded from: ``embedded:<gguf>`` or the tokenizer folder."""

    @classmethod
    def load(cls, setting: str) -> ChatTemplate:
        """The template of a model setting: ``"embedded"`` (the embedded SmolLM2, the model a
        ``transformers serve`` or llama.cpp server of its GGUF runs) or a local model folder
        holding its tokenizer files. Never downloads, never runs remote code."""
        from cogem.llm.model_files import ensure_gguf_cache, resolve_model

        location = resolve_model(setting)
        if location.source == "hub":
            raise ModelNotFoundError(
                f"chat template {setting!r}: give 'embedded' or a local folder holding the "
                "served model's tokenizer files (templates are never downloaded)"
            )
        folder = location.target
        if location.source == "embedded-gguf":
            folder = str(ensure_gguf_cache(location.target)[0])
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(
            folder, trust_remote_code=False, local_files_only=True
        )
        if not getattr(tokenizer, "chat_template", None):
            raise UsageError(f"chat template {setting!r}: the tokenizer in {folder} has none")
        return cls(tokenizer, location.model_id)

    def render(self, prompt: Prompt) -> str:
        return render_chat(self._tokenizer, prompt, model_id=self.source)
