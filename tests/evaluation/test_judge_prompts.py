"""--judge-prompt-from: the judge prompt read from a Video-ChatGPT-shaped scoring script (built here in tmp, in
our own words: the real one is never copied), its failures, and the judge's settings in every result."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from evaluation.cli import main
from evaluation.judge_prompts import PromptSourceError, read_script_judge
from evaluation.openai_judge import OpenAIJudge, Prompts
from evaluation.predictions import read_jsonl
from tests.evaluation.test_judges import FakeOpenAI

# The shape of quantitative_evaluation/evaluate_activitynet_qa.py: implicit concatenation of string literals
# and f-strings inside openai.ChatCompletion.create(model=..., messages=[{role, content}, {role, content}]).
SCRIPT = '''\
import ast
import openai


def annotate(prediction_set, caption_files, output_dir):
    for file in caption_files:
        qa_set = prediction_set[file[:-5]]
        question = qa_set['q']
        answer = qa_set['a']
        pred = qa_set['pred']
        try:
            completion = openai.ChatCompletion.create(
                model="script-judge-model",{decoding}
                messages=[
                    {{
                        "role": "system",
                        "content":
                            "You grade answers to questions about videos. "
                            "Look for a meaningful match, not the same words:"
                            "------"
                            "- Synonyms count.\\n"
                    }},
                    {{
                        "role": "user",
                        "content":
                            "Grade this pair:\\n\\n"
                            f"Question: {{question}}\\n"
                            f"Correct Answer: {{answer}}\\n"
                            f"Predicted Answer: {{{pred_var}}}\\n\\n"
                            "Reply with a dict with keys {keys} only, "
                            "like {example}."
                    }}
                ]
            )
            print(ast.literal_eval(completion["choices"][0]["message"]["content"]))
        except Exception as e:
            print(e)
'''
WANT_SYSTEM = ("You grade answers to questions about videos. Look for a meaningful match, not the same words:"
               "------- Synonyms count.\n")
WANT_USER = ("Grade this pair:\n\nQuestion: {question}\nCorrect Answer: {answer}\nPredicted Answer: {pred}\n\n"
             "Reply with a dict with keys 'pred' and 'score' only, like {'pred': 'no', 'score': 1}.")


def write_script(folder: Path, decoding: str = "", pred_var: str = "pred", keys: str = "'pred' and 'score'",
                 example: str = "{'pred': 'no', 'score': 1}") -> Path:
    path = folder / "quantitative_evaluation" / "evaluate_activitynet_qa.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SCRIPT.format(decoding=decoding, pred_var=pred_var, keys=keys, example=example), encoding="utf-8")
    return path


def test_extracts_prompts_model_and_no_decoding(tmp_path):
    judge = read_script_judge(write_script(tmp_path))
    assert judge.prompts == Prompts(WANT_SYSTEM, WANT_USER)
    assert judge.model == "script-judge-model" and judge.decoding == {}
    filled = judge.prompts.user_message("what colour?", "red", "blue")
    assert "Question: what colour?\nCorrect Answer: red\nPredicted Answer: blue\n" in filled


def test_extracts_decoding_settings(tmp_path):
    judge = read_script_judge(write_script(tmp_path, decoding="\n                temperature=0.2, max_tokens=50,"))
    assert judge.decoding == {"temperature": 0.2, "max_tokens": 50}


@pytest.mark.parametrize("make, match", [
    (lambda d: d / "missing.py", "cannot read it"),
    (lambda d: _text(d, "def broken(:\n"), "not Python"),
    (lambda d: _text(d, "import openai\nopenai.ChatCompletion.create(model='m', prompt='hi')\n"),
     "found no chat-completion call"),
    (lambda d: write_script(d, pred_var="pred1"), "interpolates 'pred1'"),  # the consistency benchmark's shape
    # a score-only benchmark scorer
    (lambda d: write_script(d, keys="'score'", example="{'score': 3}"), "does not ask for a 'pred'"),
    (lambda d: write_script(d, decoding="\n                temperature=args.t,"), "temperature= is not a literal"),
])
def test_other_shapes_fail_naming_the_file(tmp_path, make, match):
    path = make(tmp_path)
    with pytest.raises(PromptSourceError, match=match) as err:
        read_script_judge(path)
    assert str(path.resolve()) in str(err.value)


def _text(folder: Path, text: str) -> Path:
    path = folder / "script.py"
    path.write_text(text, encoding="utf-8")
    return path


def test_settings_are_part_of_the_cache_key(tmp_path):
    base = OpenAIJudge("http://127.0.0.1:9", "m", temperature=0.0)
    assert base.key("q", "a", "p") != OpenAIJudge("http://127.0.0.1:9", "m", temperature=None).key("q", "a", "p")
    assert base.key("q", "a", "p") != OpenAIJudge("http://127.0.0.1:9", "m", decoding={"top_p": 0.5}).key("q", "a",
                                                                                                          "p")
    assert base.describe()["prompt_sha256"] != OpenAIJudge("http://127.0.0.1:9", "m", prompts=Prompts(
        WANT_SYSTEM, WANT_USER)).describe()["prompt_sha256"]


# ---- through the command line, with the real tiny model --------------------------------------------------


@pytest.fixture
def dataset_root(synth_videos, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(synth_videos, root)
    return root


def _args(root: Path, out: Path, url: str, *extra: str) -> list[str]:
    return ["--dataset", "custom", "--root", str(root), "--out", str(out), "--no-progress", "--judge", "openai",
            "--judge-url", url, *extra]


def test_cli_judges_with_the_scripts_prompt_and_records_its_settings(dataset_root, tiny_checkpoint, tmp_path):
    script = write_script(tmp_path / "Video-ChatGPT")
    out = tmp_path / "out"
    model = ["--model", str(tiny_checkpoint), "--segment-seconds", "1.0", "--max-new-tokens", "3"]
    with FakeOpenAI() as server:
        assert main(_args(dataset_root, out, server.url, *model, "--judge-prompt-from", str(script))) == 0
        first = list(server.payloads)
        assert len(first) == 9
        assert {p["messages"][0]["content"] for p in first} == {WANT_SYSTEM}
        assert all(p["messages"][1]["content"].startswith("Grade this pair:\n\nQuestion: ") for p in first)
        assert {p["model"] for p in first} == {"script-judge-model"}
        assert not any("temperature" in p for p in first)  # as the script ran it: the endpoint's default

        report = json.loads((out / "metrics-openai.json").read_text())
        sha = Prompts(WANT_SYSTEM, WANT_USER).sha256
        assert report["judge"]["prompt_sha256"] == sha and report["judge"]["model"] == "script-judge-model"
        assert report["judge"]["prompt_source"] == f"{script.resolve()} (extracted)"
        assert report["judge"]["temperature"] == "endpoint default (not sent)"
        assert report["run"]["max_new_tokens"] == 3 and report["run"]["model_fingerprint"]
        md = (out / "metrics-openai.md").read_text()
        assert sha in md and report["run"]["model_fingerprint"] in md and "max_new_tokens 3" in md
        cached = read_jsonl(out / "judge_cache.jsonl").records
        assert {(c["prompt_sha256"], c["temperature"]) for c in cached} == {(sha, None)}

        # rescoring at another temperature is another judgment, not a cache hit; the flag beats the script
        assert main(_args(dataset_root, out, server.url, "--merge", "--judge-prompt-from", str(script),
                          "--judge-temperature", "0")) == 0
        assert [p.get("temperature") for p in server.payloads[9:]] == [0.0] * 9
        assert json.loads((out / "metrics-openai.json").read_text())["judge"]["temperature"] == 0.0


def test_cli_refuses_a_bad_script_before_answering(dataset_root, tmp_path, capsys):
    bad = _text(tmp_path, textwrap.dedent("""\
        import openai
        openai.ChatCompletion.create(model="m", messages=[{"role": "user", "content": f"{question}"}])
    """))
    out = tmp_path / "out"
    assert main(_args(dataset_root, out, "http://127.0.0.1:9/v1", "--judge-prompt-from", str(bad))) == 1
    err = capsys.readouterr().err
    assert str(bad.resolve()) in err and "expected 'system' and 'user'" in err
    assert not (out / "parts").exists()  # nothing was answered
    assert main(_args(dataset_root, out, "http://127.0.0.1:9/v1", "--judge-prompt-from", str(bad),
                      "--judge", "exact")) == 1
    assert "apply to --judge openai" in capsys.readouterr().err
