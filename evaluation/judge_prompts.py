"""The Video-ChatGPT judge prompt, read from the user's own checkout of Video-ChatGPT (never copied here).

Published MSVD/MSRVTT/ActivityNet-QA numbers (Video-ChatGPT, Video-LLaVA, LLaMA-VID, VoCo-LLaMA) come from
`quantitative_evaluation/evaluate_activitynet_qa.py` of github.com/mbzuai-oryx/Video-ChatGPT: a call

    openai.ChatCompletion.create(model="gpt-3.5-turbo", messages=[
        {"role": "system", "content": "..." "..."},
        {"role": "user", "content": "..." f"Question: {question}\\n" f"Correct Answer: {answer}\\n"
                                    f"Predicted Answer: {pred}\\n\\n" "..."}])

`--judge-prompt-from PATH` parses that script with `ast` (it is never run or imported), finds the call
whose `messages=` is a list of `{"role": ..., "content": ...}` dicts, and turns the two contents into
templates: string pieces verbatim, `{question}` / `{answer}` / `{pred}` where the f-strings interpolate
those variables. The call's `model=` and decoding keywords (temperature, top_p, max_tokens, ...) are
read too, so a run can use the script's settings: it sends no temperature, i.e. the API default.
Anything of another shape fails naming the file and what was found, rather than guessing.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path

from evaluation.openai_judge import Prompts

SCRIPT_HINT = "Video-ChatGPT's quantitative_evaluation/evaluate_activitynet_qa.py"
# the script's f-string variables -> our template fields
FIELDS = {"question": "{question}", "answer": "{answer}", "pred": "{pred}"}
# chat-completion keywords that change what the judge replies (sent as given; anything else is ignored)
DECODING_KEYS = frozenset({"temperature", "top_p", "max_tokens", "n", "presence_penalty", "frequency_penalty",
                           "seed", "stop", "logit_bias"})


class PromptSourceError(ValueError):
    """The file is not a Video-ChatGPT QA scorer of the expected shape."""


@dataclass(frozen=True)
class ScriptJudge:
    """What a Video-ChatGPT scoring script asks its judge: prompts, model and decoding settings."""

    path: Path
    prompts: Prompts
    model: str | None
    """The script's `model=` (None when not a string literal)."""
    decoding: dict = field(default_factory=dict)
    """The script's decoding keywords; empty means every setting is the API default."""


def read_script_judge(path: str | os.PathLike) -> ScriptJudge:
    """Parse `path` (Video-ChatGPT's evaluate_activitynet_qa.py or a script of its shape) -> its judge."""
    path = Path(path).expanduser().resolve()
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise PromptSourceError(f"--judge-prompt-from {path}: cannot read it ({err}); give the path to "
                                f"{SCRIPT_HINT} in your checkout") from err
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as err:
        raise PromptSourceError(f"--judge-prompt-from {path}: not Python (line {err.lineno}: {err.msg})") from err
    constants = _module_strings(tree)
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call) and _messages_arg(node) is not None]
    if not calls:
        raise PromptSourceError(
            f"--judge-prompt-from {path}: found no chat-completion call with messages=[{{'role': 'system', "
            f"'content': ...}}, {{'role': 'user', 'content': ...}}]; expected {SCRIPT_HINT}")
    found = {_judge_of(path, call, constants) for call in calls}
    if len(found) > 1:
        lines = ", ".join(str(call.lineno) for call in calls)
        raise PromptSourceError(f"--judge-prompt-from {path}: {len(calls)} chat-completion calls with different "
                                f"prompts or settings (lines {lines}); expected one, as in {SCRIPT_HINT}")
    model, decoding, system, user = found.pop()
    return ScriptJudge(path, Prompts(system, user), model, dict(decoding))


def _messages_arg(call: ast.Call) -> ast.List | None:
    for keyword in call.keywords:
        if keyword.arg == "messages" and isinstance(keyword.value, ast.List):
            return keyword.value
    return None


def _module_strings(tree: ast.Module) -> dict[str, ast.expr]:
    """Module-level `NAME = <string expression>` (a refactored script may keep its prompt in a constant)."""
    out: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            out[node.targets[0].id] = node.value
    return out


def _judge_of(path: Path, call: ast.Call, constants: dict[str, ast.expr]) -> tuple:
    """(model, decoding items, system template, user template) of one call; hashable, to compare calls."""
    where = f"--judge-prompt-from {path}, line {call.lineno}"
    contents: dict[str, str] = {}
    for element in _messages_arg(call).elts:
        message = _message(element)
        if message is None:
            raise PromptSourceError(f"{where}: a message is not a literal {{'role': ..., 'content': ...}} dict")
        role, content = message
        if role in contents:
            raise PromptSourceError(f"{where}: two {role!r} messages; expected one system and one user message")
        contents[role] = _template(content, f"{where} ({role} message)", constants)
    if set(contents) != {"system", "user"}:
        raise PromptSourceError(f"{where}: the messages' roles are {sorted(contents)}; expected 'system' and 'user'")
    system, user = contents["system"], contents["user"]
    if any(f in system for f in FIELDS.values()):
        raise PromptSourceError(f"{where}: the system message interpolates question/answer/pred; expected them in "
                                "the user message only")
    missing = [f for f in FIELDS.values() if user.count(f) != 1]
    if missing:
        raise PromptSourceError(f"{where}: the user message must interpolate each of question, answer, pred once "
                                f"({', '.join(missing)} not so); expected {SCRIPT_HINT}")
    if "'pred'" not in user:
        raise PromptSourceError(f"{where}: the prompt does not ask for a 'pred' (yes/no) key, so it is not the QA "
                                f"scorer (the benchmark scripts ask for a score only); expected {SCRIPT_HINT}")
    model, decoding = None, []
    for keyword in call.keywords:
        if keyword.arg == "model":
            model = keyword.value.value if _is_str(keyword.value) else None
        elif keyword.arg in DECODING_KEYS:
            try:
                value = ast.literal_eval(keyword.value)
            except ValueError as err:
                raise PromptSourceError(f"{where}: {keyword.arg}= is not a literal ({err}); cannot know the "
                                        "judge's decoding settings") from err
            decoding.append((keyword.arg, value if not isinstance(value, list | dict) else repr(value)))
    return model, tuple(sorted(decoding)), system, user


def _message(node: ast.expr) -> tuple[str, ast.expr] | None:
    if not isinstance(node, ast.Dict) or not all(k is not None and _is_str(k) for k in node.keys):
        return None
    entries = {k.value: v for k, v in zip(node.keys, node.values, strict=True)}
    if set(entries) != {"role", "content"} or not _is_str(entries["role"]):
        return None
    return entries["role"].value, entries["content"]


def _is_str(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _template(node: ast.expr, where: str, constants: dict[str, ast.expr], depth: int = 0) -> str:
    """A string expression -> its text, with FIELDS where the f-strings interpolate them."""
    if _is_str(node):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_template(value, where, constants, depth) for value in node.values)
    if isinstance(node, ast.FormattedValue):
        if not isinstance(node.value, ast.Name) or node.value.id not in FIELDS:
            raise PromptSourceError(f"{where}: interpolates {ast.unparse(node.value)!r} at line {node.lineno}; only "
                                    f"{', '.join(FIELDS)} are known (is this {SCRIPT_HINT}?)")
        if node.conversion != -1 or node.format_spec is not None:
            raise PromptSourceError(f"{where}: {{{node.value.id}}} has a conversion or format spec at line "
                                    f"{node.lineno}; expected a plain interpolation")
        return FIELDS[node.value.id]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _template(node.left, where, constants, depth) + _template(node.right, where, constants, depth)
    if isinstance(node, ast.Name) and node.id in constants and depth < 8:
        return _template(constants[node.id], where, constants, depth + 1)
    raise PromptSourceError(f"{where}: the content at line {getattr(node, 'lineno', '?')} is "
                            f"{ast.unparse(node)[:80]!r}, not string literals and f-strings")
