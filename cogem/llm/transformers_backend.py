"""The default LLM backend: a Hugging Face causal LM run in-process with transformers.

Greedy decoding, schema-constrained by xgrammar; closed-set options scored by their exact
continuation log-likelihood, computed the way lm-evaluation-harness computes it.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cogem.errors import CogemError, ModelNotFoundError, UsageError
from cogem.llm.base import (
    Generation,
    ModelInfo,
    OptionScores,
    Prompt,
    normalize_logprobs,
)
from cogem.llm.batch_scoring import (
    BatchPlan,
    EncodedRequest,
    encode_or_error,
    score_encoded,
)
from cogem.llm.chat_template import render_chat
from cogem.llm.llama_scoring import LlamaScorer
from cogem.llm.model_files import (
    ModelLocation,
    dir_weights_sha256,
    ensure_gguf_cache,
    resolve_model,
)
from cogem.llm.options import check_options

if TYPE_CHECKING:
    import xgrammar

__all__ = ["TransformersLLM"]

_DTYPES = ("float32", "bfloat16", "float16")
# Options scored in one batched forward pass; bounds the memory of the expanded prefix cache.
_OPTION_BATCH = 8


class TransformersLLM:
    """A transformers causal LM behind cogem's ``LLM`` Protocol. Build it with :meth:`load`.

    Calls are serialized by a lock: one model instance is not safe to run from several threads.
    """

    def __init__(self, model: Any, tokenizer: Any, info: ModelInfo, *, seed: int = 0) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._info = info
        self._seed = seed
        self._lock = threading.Lock()
        # A LoRA view (see ``with_adapter``) shares the model, this lock and the peft wrapper with
        # the view it came from; ``_adapter`` is the adapter it runs (None: the base weights).
        self._peft: list[Any] = []
        self._adapter: str | None = None
        self._grammar_compiler: xgrammar.GrammarCompiler | None = None
        self._grammars: dict[str, xgrammar.CompiledGrammar] = {}
        eos = model.generation_config.eos_token_id
        if eos is None:
            eos = tokenizer.eos_token_id
        self._eos_ids: list[int] = (
            [] if eos is None else [int(e) for e in (eos if isinstance(eos, list) else [eos])]
        )

    @classmethod
    def load(
        cls, model: str | None = None, *, seed: int = 0, dtype: str | None = None
    ) -> TransformersLLM:
        """Load ``model``: ``None``/"default"/"embedded", a local folder, or a hub id.

        The first load of the embedded GGUF dequantizes it into the cache dir; later loads read
        the cached safetensors. ``dtype`` ("float32", "bfloat16", "float16") overrides the
        default: float32 for the embedded model, the checkpoint's own dtype otherwise.
        bfloat16 runs on the CPU's AMX/AVX-512 bf16 units where present; scores then differ
        slightly from float32.
        """
        if dtype is not None and dtype not in _DTYPES:
            raise UsageError(f"dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        location = resolve_model(model)
        if location.source == "embedded-gguf":
            folder, weights_sha = ensure_gguf_cache(location.target)
            hf_model, tokenizer = _load_pretrained(str(folder), location, dtype=dtype or "float32")
        elif location.source == "local-dir":
            weights_sha = dir_weights_sha256(location.target)
            hf_model, tokenizer = _load_pretrained(location.target, location, dtype=dtype or "auto")
        else:
            hf_model, tokenizer = _load_pretrained(location.target, location, dtype=dtype or "auto")
            weights_sha = dir_weights_sha256(_hub_snapshot_dir(location.target))
        info = ModelInfo(
            model_id=location.model_id,
            source=location.source,
            weights_sha256=weights_sha,
            dtype=str(hf_model.dtype).removeprefix("torch."),
            parameters=sum(p.numel() for p in hf_model.parameters()),
        )
        return cls(hf_model, tokenizer, info, seed=seed)

    @property
    def info(self) -> ModelInfo:
        return self._info

    @property
    def model(self) -> Any:
        """The underlying transformers model (for training; calls through cogem take the lock)."""
        return self._model

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    def with_adapter(self, directory: str | Path, *, name: str, info: ModelInfo) -> TransformersLLM:
        """A view of this model that runs the LoRA adapter in ``directory`` (a peft adapter folder
        in safetensors), described by ``info``. This view and every other view of the model keep
        running the base weights: the adapter is switched on only inside the new view's calls, so
        one copy of the base model serves both tuned and untuned modules.
        """
        from peft import PeftModel

        folder = Path(directory)
        if not (folder / "adapter_model.safetensors").is_file():
            raise UsageError(f"path={str(folder)!r} has no adapter_model.safetensors")
        if name == "default" or (self._peft and name in self._peft[0].peft_config):
            raise UsageError(f"adapter name {name!r} is reserved or already loaded")
        with self._lock:
            if not self._peft:
                # peft injects the LoRA layers into ``self._model`` in place; the wrapper is kept
                # only to switch adapters. It reads adapter_model.safetensors (never pickle).
                wrapper = PeftModel.from_pretrained(
                    self._model, str(folder), adapter_name=name, is_trainable=False
                )
                self._peft.append(wrapper)
            else:
                self._peft[0].load_adapter(str(folder), adapter_name=name, is_trainable=False)
            self._model.eval()
        return self._view(info, adapter=name)

    def with_info(self, info: ModelInfo) -> TransformersLLM:
        """The same model, described by ``info`` (e.g. naming the tuned artifact it holds)."""
        return self._view(info, adapter=self._adapter)

    def _view(self, info: ModelInfo, *, adapter: str | None) -> TransformersLLM:
        # Shares the model, tokenizer, lock, grammar cache and peft wrapper (all by reference).
        view = TransformersLLM.__new__(TransformersLLM)
        view.__dict__.update(self.__dict__)
        view._info = info
        view._adapter = adapter
        return view

    @contextlib.contextmanager
    def _weights(self) -> Iterator[None]:
        """Run the model with this view's adapter on (or every adapter off). Hold the lock."""
        if not self._peft:
            yield
            return
        wrapper = self._peft[0]
        if self._adapter is None:
            with wrapper.disable_adapter():
                yield
            return
        wrapper.set_adapter(self._adapter)
        yield

    @property
    def seed(self) -> int:
        return self._seed

    def render(self, prompt: Prompt) -> str:
        """The exact text the model sees: a ``ChatPrompt`` through the chat template (with the
        assistant turn opened), a plain ``str`` verbatim."""
        return render_chat(self._tokenizer, prompt, model_id=self._info.model_id)

    def _encode(self, text: str) -> list[int]:
        # Never add special tokens: a chat prompt already carries them as text (adding a BOS
        # would double it), and a raw prompt must be scored exactly as given.
        ids = self._tokenizer(text, add_special_tokens=False)["input_ids"]
        return [int(i) for i in ids]

    # --- generation ------------------------------------------------------------------------

    def generate(
        self,
        prompt: Prompt,
        *,
        schema: dict[str, Any] | None = None,
        max_new_tokens: int = 256,
    ) -> Generation:
        import torch

        if max_new_tokens < 1:
            raise UsageError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        text = self.render(prompt)
        ids = self._encode(text)
        if not ids:
            raise UsageError("prompt is empty: give the model some text to continue")
        self._check_length(len(ids) + max_new_tokens, "prompt tokens + max_new_tokens")
        with self._lock:
            processors = [] if schema is None else [self._logits_processor(schema)]
            started = time.perf_counter()
            torch.manual_seed(self._seed)
            input_ids = torch.tensor([ids], dtype=torch.long)
            with torch.inference_mode(), self._weights():
                output = self._model.generate(
                    input_ids=input_ids,
                    attention_mask=torch.ones_like(input_ids),
                    do_sample=False,
                    temperature=None,
                    top_p=None,
                    top_k=None,
                    max_new_tokens=max_new_tokens,
                    logits_processor=processors,
                    eos_token_id=self._eos_ids or None,
                    pad_token_id=self._pad_id(),
                )
            latency_ms = (time.perf_counter() - started) * 1000.0
        new_tokens = [int(t) for t in output[0, len(ids) :].tolist()]
        # Batch size 1: nothing is padded, so every new token was generated (the stop token too).
        stopped = bool(new_tokens) and new_tokens[-1] in self._eos_ids
        finish: Literal["stop", "length"] = (
            "length" if len(new_tokens) >= max_new_tokens and not stopped else "stop"
        )
        return Generation(
            prompt_text=text,
            text=self._tokenizer.decode(new_tokens, skip_special_tokens=True),
            prompt_tokens=len(ids),
            completion_tokens=len(new_tokens),
            finish_reason=finish,
            latency_ms=latency_ms,
        )

    def _check_length(self, tokens: int, what: str) -> None:
        limit = getattr(self._model.config, "max_position_embeddings", None)
        if isinstance(limit, int) and tokens > limit:
            raise UsageError(
                f"{what} = {tokens} exceeds the context window of model "
                f"{self._info.model_id!r} ({limit} tokens); shorten the prompt"
            )

    def _pad_id(self) -> int | None:
        pad = self._tokenizer.pad_token_id
        if pad is None and self._eos_ids:
            pad = self._eos_ids[0]
        return None if pad is None else int(pad)

    def _logits_processor(self, schema: dict[str, Any]) -> Any:
        import xgrammar
        import xgrammar.contrib.hf

        if not isinstance(schema, dict):
            raise UsageError(f"schema must be a JSON schema dict, got {type(schema).__name__}")
        # Key order is kept: xgrammar emits object properties in schema order.
        key = json.dumps(schema, ensure_ascii=False, separators=(",", ":"))
        compiled = self._grammars.get(key)
        if compiled is None:
            if self._grammar_compiler is None:
                tokenizer_info = xgrammar.TokenizerInfo.from_huggingface(
                    self._tokenizer,
                    vocab_size=self._model.config.vocab_size,
                    stop_token_ids=self._eos_ids or None,
                )
                self._grammar_compiler = xgrammar.GrammarCompiler(tokenizer_info)
            compiled = self._compile(schema, key)
            self._grammars[key] = compiled
        # The processor holds per-generation matcher state; only the compiled grammar is reused.
        return xgrammar.contrib.hf.LogitsProcessor(compiled)

    def _compile(self, schema: dict[str, Any], key: str) -> Any:
        assert self._grammar_compiler is not None
        errors: list[str] = []
        # The tightened schema first; xgrammar 0.2.8 rejects some regexes it should accept, and
        # the original schema is still a sound (slightly looser) grammar.
        tightened = json.dumps(_grammar_schema(schema), ensure_ascii=False, separators=(",", ":"))
        for candidate in dict.fromkeys([tightened, key]):
            try:
                # Compact JSON: with free whitespace a small model can emit spaces forever.
                return self._grammar_compiler.compile_json_schema(candidate, any_whitespace=False)
            except Exception as exc:  # xgrammar raises RuntimeError/ValueError subtypes
                errors.append(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        raise UsageError(f"JSON schema cannot be compiled to a grammar: {errors[-1]}")

    # --- option scoring --------------------------------------------------------------------

    def score_options(self, prompt: Prompt, options: Sequence[str]) -> OptionScores:
        """Exact log-probability of each option as a continuation of the prompt text.

        Tokenization follows lm-evaluation-harness (``TemplateLM._encode_pair``): trailing
        whitespace of the prompt moves to the front of every option; ``context = encode(prompt)``,
        ``continuation = encode(prompt + option)[len(context):]``; each option is scored
        conditioned on ``context``. So every option shares the same prefix, which runs through
        the model once; the options then continue from copies of its KV cache.
        """
        import torch

        req = self.encode_request(prompt, options)
        context_ids, continuations, opts, text = (
            req.context,
            req.continuations,
            req.options,
            req.prompt_text,
        )
        self._check_length(
            len(context_ids) + max(map(len, continuations)), "prompt + option tokens"
        )
        with self._lock:
            started = time.perf_counter()
            with torch.inference_mode(), self._weights():
                logprobs = self._continuation_logprobs(context_ids, continuations)
            latency_ms = (time.perf_counter() - started) * 1000.0
        return OptionScores(
            prompt_text=text,
            options=opts,
            logprobs=logprobs,
            probs=normalize_logprobs(logprobs),
            option_tokens=[len(c) for c in continuations],
            prompt_tokens=len(context_ids),
            latency_ms=latency_ms,
        )

    def encode_request(self, prompt: Prompt, options: Sequence[str]) -> EncodedRequest:
        """Tokenize one scoring request exactly as lm-evaluation-harness does (see
        :meth:`score_options`)."""
        opts = check_options(options)
        text = self.render(prompt)
        context, moved = _split_trailing_whitespace(text)
        if context:
            context_ids = self._encode(context)
            continuations = [self._encode(context + moved + o)[len(context_ids) :] for o in opts]
        else:  # lm-eval conditions an empty context on the BOS (or EOS) token
            context_ids = [self._prefix_token_id()]
            continuations = [self._encode(moved + o) for o in opts]
        for option, cont in zip(opts, continuations, strict=True):
            if not cont:
                raise UsageError(f"option {option!r} adds no token to the prompt")
        return EncodedRequest(text, opts, context_ids, continuations)

    def score_batch(
        self,
        requests: Sequence[tuple[Prompt, Sequence[str]]],
        *,
        plan: BatchPlan | None = None,
        on_batch: Callable[[int], None] | None = None,
    ) -> list[OptionScores | CogemError]:
        """Score many requests in length-sorted, padded batches (see :mod:`cogem.llm.batch_scoring`).

        The result has one entry per request, in order: its scores, or the error that request
        alone raised (an empty option, say). Inputs longer than the context window are
        left-truncated as lm-evaluation-harness truncates them.
        """
        encoded = [encode_or_error(partial(self.encode_request, p, o)) for p, o in requests]
        good = [e for e in encoded if isinstance(e, EncodedRequest)]
        with self._lock, self._weights():
            scored = iter(
                score_encoded(
                    self._model,
                    good,
                    pad_id=self._pad_id() or 0,
                    window=self.context_window,
                    plan=plan or BatchPlan(),
                    on_batch=on_batch,
                    scorer=LlamaScorer.for_model(self._model),
                )
            )
        return [next(scored) if isinstance(e, EncodedRequest) else e for e in encoded]

    @property
    def scoring_forward(self) -> str:
        """Which forward pass :meth:`score_batch` runs now: ``cogem-llama`` or ``transformers``."""
        return "transformers" if LlamaScorer.for_model(self._model) is None else "cogem-llama"

    @property
    def context_window(self) -> int:
        """The longest input the model takes, resolved the way lm-evaluation-harness does."""
        config = self._model.config
        for name in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(config, name, None)
            if isinstance(value, int) and value > 0:
                return value
        limit = getattr(self._tokenizer, "model_max_length", None)
        # Tokenizers without a limit report a huge sentinel; lm-eval then uses 2048.
        return limit if isinstance(limit, int) and 0 < limit < 10**9 else 2048

    def _prefix_token_id(self) -> int:
        token = self._tokenizer.bos_token_id
        if token is None:
            token = self._eos_ids[0] if self._eos_ids else self._tokenizer.eos_token_id
        if token is None:
            raise UsageError("prompt is empty and the model has no BOS/EOS token to condition on")
        return int(token)

    def _continuation_logprobs(
        self, context_ids: list[int], continuations: list[list[int]]
    ) -> list[float]:
        import copy

        import torch

        cache_kw = self._cache_kwarg()
        prefix = torch.tensor([context_ids], dtype=torch.long)
        out = self._model(input_ids=prefix, use_cache=True, logits_to_keep=1)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        if cache is None:  # a model without a KV cache: score each full sequence
            return [self._full_sequence_logprob(context_ids, cont) for cont in continuations]
        # The prefix's last position predicts every option's first token.
        first = torch.log_softmax(out.logits[0, -1].double(), dim=-1)
        results = [float(first[cont[0]]) for cont in continuations]
        rest = [i for i, cont in enumerate(continuations) if len(cont) > 1]
        pad = self._pad_id() or 0
        for start in range(0, len(rest), _OPTION_BATCH):
            batch = rest[start : start + _OPTION_BATCH]
            # Each option feeds all but its last token; right padding is safe because a causal
            # model's real positions never attend to the pads after them.
            width = max(len(continuations[i]) - 1 for i in batch)
            rows = [
                continuations[i][:-1] + [pad] * (width - len(continuations[i]) + 1) for i in batch
            ]
            batch_cache = copy.deepcopy(cache)
            if len(batch) > 1:
                batch_cache.batch_repeat_interleave(len(batch))
            logits = self._model(
                input_ids=torch.tensor(rows, dtype=torch.long),
                use_cache=True,
                **{cache_kw: batch_cache},
            ).logits
            logsoft = torch.log_softmax(logits.double(), dim=-1)
            for row, i in enumerate(batch):
                targets = continuations[i][1:]
                picked = logsoft[row, torch.arange(len(targets)), torch.tensor(targets)]
                results[i] += float(picked.sum())
        return results

    def _full_sequence_logprob(self, context_ids: list[int], continuation: list[int]) -> float:
        import torch

        ids = torch.tensor([context_ids + continuation[:-1]], dtype=torch.long)
        logits = self._model(input_ids=ids, use_cache=False).logits[0, len(context_ids) - 1 :]
        logsoft = torch.log_softmax(logits.double(), dim=-1)
        picked = logsoft[torch.arange(len(continuation)), torch.tensor(continuation)]
        return float(picked.sum())

    def _cache_kwarg(self) -> str:
        # transformers 5.24 renamed `past_key_values` to `cache` (the old name warns).
        import inspect

        params = inspect.signature(self._model.forward).parameters
        return "cache" if "cache" in params else "past_key_values"


# Characters a JSON string may hold unescaped.
_PLAIN_CHAR = r'[^"\\\x00-\x1f]'
_MAX_REGEX_BOUND = 128
# Never rewrite inside literal values: a `const`/`enum` object is data, not a schema.
_LITERAL_KEYS = frozenset({"const", "enum", "default", "examples"})


def _grammar_schema(node: Any) -> Any:
    """A copy of ``node`` for xgrammar 0.2.8, whose length-bounded strings allow raw control
    characters (``"a<TAB>b"``, invalid JSON). Such strings (bounds up to 128) become an
    equivalent ``pattern`` of plain JSON characters. Escapes are lost either way: xgrammar bans
    them in bounded strings. Output still satisfies the original schema, which the runtime
    validates against.
    """
    if isinstance(node, list):
        return [_grammar_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {
        key: value if key in _LITERAL_KEYS else _grammar_schema(value)
        for key, value in node.items()
    }
    low, high = out.get("minLength", 0), out.get("maxLength")
    bounded = "minLength" in out or "maxLength" in out
    # xgrammar 0.2.8 fails to compile (internal check) such regexes with bounds above ~128.
    small = (
        isinstance(low, int)
        and low <= _MAX_REGEX_BOUND
        and (high is None or (isinstance(high, int) and high <= _MAX_REGEX_BOUND))
    )
    if bounded and small and "pattern" not in out and "format" not in out:
        high_text = "" if high is None else str(high)
        out.pop("minLength", None)
        out.pop("maxLength", None)
        out["pattern"] = f"^{_PLAIN_CHAR}{{{low},{high_text}}}$"
    return out


def _split_trailing_whitespace(text: str) -> tuple[str, str]:
    stripped = text.rstrip()
    return stripped, text[len(stripped) :]


def _load_pretrained(target: str, location: ModelLocation, *, dtype: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cogem._hf import quiet_weight_loading

    try:
        tokenizer: Any = AutoTokenizer.from_pretrained(target, trust_remote_code=False)
        with quiet_weight_loading():
            model: Any = AutoModelForCausalLM.from_pretrained(
                target, dtype=dtype, use_safetensors=True, trust_remote_code=False
            )
    except (OSError, ValueError) as exc:
        where = "model path" if location.source != "hub" else "model id"
        hint = (
            "; no network or not in the Hugging Face cache: download it where a network exists, "
            "or point the model setting at a local folder"
            if location.source == "hub"
            else ""
        )
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFoundError(
            f"{where}={location.model_id!r} could not be loaded ({first_line}){hint}"
        ) from exc
    model.eval()
    return model, tokenizer


def _hub_snapshot_dir(repo_id: str) -> Path:
    from transformers.utils.hub import cached_file

    config = cached_file(repo_id, "config.json")
    if config is None:
        raise ModelNotFoundError(f"model id={repo_id!r} has no config.json in the local cache")
    return Path(config).parent
