"""Built-in data, upload validation, the offline tokenizer, label masking and dynamic padding."""

import json
import types

import pytest
import torch

import gpu_notebooks.llm_finetuning.datasets as llm_datasets
from gpu_notebooks.llm_finetuning.datasets import (
    choose_dataset,
    data_source_summary,
    load_hub_dataset,
    split_by_hash,
    validate_upload,
)
from gpu_notebooks.llm_finetuning.evaluation import score_generations
from gpu_notebooks.llm_finetuning.explain.lora import hyperparameter_text, train_example_count
from gpu_notebooks.llm_finetuning.lora import lora_plan
from gpu_notebooks.llm_finetuning.loss import causal_lm_loss
from gpu_notebooks.llm_finetuning.models import build_offline_tokenizer, tokenizer_corpus
from gpu_notebooks.llm_finetuning.settings import TrainSettings
from gpu_notebooks.llm_finetuning.tasks import (
    ANSWER_FORMATS,
    PROMPT_TEMPLATE,
    builtin_examples,
    format_prompt,
)
from gpu_notebooks.llm_finetuning.tokens import (
    collate_batch,
    make_loader,
    token_statistics,
    tokenize_examples,
)


@pytest.fixture(scope="module")
def data():
    return builtin_examples()


@pytest.fixture(scope="module")
def tokenizer(data):
    return build_offline_tokenizer(tokenizer_corpus(data))


def test_builtin_set_has_200_distinct_examples_over_several_tasks(data):
    assert len(data) == 200
    assert data["prompt"].is_unique
    assert not data.duplicated(["prompt", "response"]).any()
    assert data["task"].nunique() >= 6 and data["task"].value_counts().min() >= 20
    assert (data["prompt"].str.len() > 5).all() and (data["response"].str.len() > 0).all()


def test_builtin_answers_follow_their_fixed_format(data):
    for task, response in zip(data["task"], data["response"], strict=True):
        assert score_generations(data[data["response"] == response].head(1), [response])[
            "format_match"
        ].all(), task
    assert set(data["task"]) == set(ANSWER_FORMATS)


def test_builtin_set_and_split_are_deterministic_and_stratified(data):
    again = builtin_examples()
    assert again.equals(data)
    counts = data.groupby(["task", "split"]).size().unstack()
    assert (counts["eval"] == 5).all() and (counts["train"] == 20).all()
    assert set(data[data["split"] == "eval"]["prompt"]).isdisjoint(data[data["split"] == "train"]["prompt"])
    eval_units = data[(data["task"] == "units") & (data["split"] == "eval")]["prompt"]
    assert eval_units.str.extract(r"to (\w+)\.")[0].nunique() == 5  # every unit kind is evaluated
    eval_sentiment = data[(data["task"] == "sentiment") & (data["split"] == "eval")]["response"]
    assert set(eval_sentiment) == {"positive", "negative"}


def test_hash_split_ignores_order_and_always_has_both_splits():
    prompts = [f"question number {i}" for i in range(50)]
    labels = dict(zip(prompts, split_by_hash(prompts), strict=True))
    assert dict(zip(prompts[::-1], split_by_hash(prompts[::-1]), strict=True)) == labels
    assert list(labels.values()).count("eval") == 10  # exactly the share, not a coin flip per row
    assert set(split_by_hash(["a", "b"])) == {"train", "eval"}


def csv_bytes(rows, header="prompt,response"):
    return (header + "\n" + "\n".join(f'"{p}","{r}"' for p, r in rows)).encode()


GOOD_ROWS = [(f"Say the number {i}", f"{i}") for i in range(30)]


def test_valid_csv_and_jsonl_uploads_load():
    frame, errors, warnings = validate_upload("data.csv", csv_bytes(GOOD_ROWS))
    assert errors == [] and warnings == [] and len(frame) == 30
    assert list(frame.columns) == ["task", "prompt", "response", "split"] and set(frame["split"]) == {
        "train",
        "eval",
    }
    jsonl = "\n".join(json.dumps({"Prompt": p, "response": r, "extra": 1}) for p, r in GOOD_ROWS).encode()
    frame, errors, _ = validate_upload("data.jsonl", jsonl)
    assert errors == [] and len(frame) == 30


@pytest.mark.parametrize(
    ("name", "contents", "message"),
    [
        ("data.txt", b"prompt,response\na,b", "expected a .csv, .jsonl or .json file"),
        ("data.csv", b"", "is empty"),
        ("data.csv", b"   \n  ", "is empty"),
        ("data.csv", "prompt,response\nna\xefve,caf\xe9\n".encode("latin-1"), "not UTF-8"),
        ("data.csv", b"query,reply\na,b\n", "needs a prompt column (`prompt`, `instruction` or `question`)"),
        ("data.csv", b"prompt,response\n", "has a header but no rows"),
        (
            "data.csv",
            b"prompt;response\nhi;there\n",
            "seems separated by ';', tab or '|'; save it comma-separated.",
        ),
        ("data.json", b'[{"prompt": "a", "response": "b"}, 3]', "item 2 of the JSON array is not an object"),
        ("data.json", b'[{"prompt": "a",\n "response": }]', "is not valid JSON: Expecting value (line 2)"),
        ("data.jsonl", b'{"prompt": "a", "response": "b"}\n{not json}\n', "line 2 is not valid JSON"),
        ("data.jsonl", b'["prompt", "response"]\n', "not a JSON object"),
        ("data.csv", csv_bytes(GOOD_ROWS[:4]), "at least 10 are needed"),
        ("data.csv", b'prompt,response\n"unclosed,quote\n', "not valid CSV"),
    ],
)
def test_bad_uploads_give_clear_errors(name, contents, message):
    frame, errors, _ = validate_upload(name, contents)
    assert frame is None and len(errors) == 1 and message in errors[0], errors


def test_upload_size_cap():
    frame, errors, _ = validate_upload("big.csv", csv_bytes(GOOD_ROWS), max_bytes=100)
    assert frame is None and "the limit is" in errors[0]


def test_empty_overlong_and_duplicate_rows_are_dropped_with_warnings():
    rows = GOOD_ROWS + [("", "x"), ("y", ""), ("z" * 50, "long"), GOOD_ROWS[0]]
    frame, errors, warnings = validate_upload("data.csv", csv_bytes(rows), max_chars=40)
    assert errors == [] and len(frame) == 30
    text = " ".join(warnings)
    assert "2 rows with an empty" in text and "1 row longer than 40" in text and "1 duplicate row." in text


@pytest.mark.parametrize(
    "junk",
    [b"\x00\x01\x02", b"\xff\xfe\x00a", b",,,,\n,,,", b'{"a":1}', b"prompt\n1\n", b"[", b"[]", b"[[]]", b"5"],
)
def test_garbage_never_raises(junk):
    for name in ("x.csv", "x.jsonl", "x.json"):
        frame, errors, _ = validate_upload(name, junk)
        assert frame is None and errors


def test_choose_dataset_reports_a_missing_upload():
    frame, errors, _ = choose_dataset(TrainSettings(data_source="upload"), {"upload": []})
    assert frame is None and "no file was chosen" in errors[0]
    frame, errors, _ = choose_dataset(TrainSettings(), None)
    assert len(frame) == 200 and errors == []


def test_missing_columns_are_named_in_words_not_as_a_python_list():
    """Issue 24, item 13: the message printed `['prompt', 'response']`."""
    _, errors, _ = validate_upload("data.csv", b"query,reply\nhi,there\n")
    assert errors == [
        "`data.csv` needs a prompt column (`prompt`, `instruction` or `question`) and a response column "
        "(`response`, `output`, `answer` or `completion`); found: `query` and `reply`."
    ]
    _, errors, _ = validate_upload("data.csv", b"prompt,reply,notes\nhi,there,x\n")
    assert "needs a response column" in errors[0] and "found: `prompt`, `reply` and `notes`." in errors[0]
    assert "[" not in errors[0]


def test_alpaca_json_and_question_answer_files_load_with_the_columns_they_used_named():
    """Alpaca's layout (a JSON array; instruction, input, output) is the commonest instruction-tuning file."""
    rows = [
        {"instruction": f"Add {i} and 1", "input": "" if i % 2 else f"Use base {i}", "output": i + 1}
        for i in range(20)
    ]
    frame, errors, warnings = validate_upload("alpaca_data.json", json.dumps(rows, indent=2).encode())
    assert errors == [] and len(frame) == 20
    assert warnings == [
        "Used `instruction` (with `input` below it where filled) as the prompt and `output` as the response."
    ]
    by_prompt = dict(zip(frame["prompt"], frame["response"], strict=True))
    assert by_prompt["Add 0 and 1\n\nUse base 0"] == "1" and by_prompt["Add 1 and 1"] == "2"
    qa = "\n".join(json.dumps({"Question": p, "Answer": r}) for p, r in GOOD_ROWS).encode()
    frame, errors, warnings = validate_upload("qa.jsonl", qa)
    assert errors == [] and len(frame) == 30
    assert warnings == ["Used `Question` as the prompt and `Answer` as the response."]


def test_a_response_of_zero_is_an_answer_not_an_empty_field():
    rows = [{"prompt": f"What is {i} - {i}?", "response": 0} for i in range(12)] + [
        {"prompt": "x", "response": None}
    ]
    frame, errors, warnings = validate_upload("zeros.jsonl", "\n".join(map(json.dumps, rows)).encode())
    assert errors == [] and len(frame) == 12 and set(frame["response"]) == {"0"}
    assert warnings == ["Skipped 1 row with an empty prompt or response."]


def uploaded(name, contents):
    """What mo.ui.file's value holds for one chosen file."""
    return [types.SimpleNamespace(name=name, contents=contents)]


def test_an_upload_is_what_trains_when_upload_is_chosen_and_the_summary_names_it():
    form = {"upload": uploaded("mine.csv", csv_bytes(GOOD_ROWS))}
    settings = TrainSettings(data_source="upload")
    frame, errors, warnings = choose_dataset(settings, form)
    assert errors == warnings == [] and len(frame) == len(GOOD_ROWS) and set(frame["task"]) == {"upload"}
    assert data_source_summary(settings, form, frame) == f"uploaded `mine.csv` ({len(GOOD_ROWS)} rows)"


def test_a_file_uploaded_while_another_source_is_chosen_is_said_to_be_unused():
    """Issue 24, item 13: marimo said "Uploaded 1 file.", the preview still showed the built-in 200 rows and
    nothing said the file was ignored."""
    form = {"upload": uploaded("mine.csv", csv_bytes(GOOD_ROWS))}
    settings = TrainSettings(data_source="builtin")
    frame, errors, warnings = choose_dataset(settings, form)
    assert errors == [] and len(frame) == len(builtin_examples())
    assert warnings == [
        f"`mine.csv` is uploaded but **not used**: the data choice is **built-in ({len(builtin_examples())} "
        "examples)**. Choose **upload** to train on it."
    ]
    assert data_source_summary(settings, form, frame) == f"the built-in set ({len(builtin_examples())} rows)"
    assert choose_dataset(settings, {"upload": []})[2] == []  # nothing uploaded: nothing to say


def test_the_summary_names_every_data_source():
    assert data_source_summary(TrainSettings(data_source="upload"), {"upload": []}, None) == (
        "upload (no file chosen yet)"
    )
    bad = {"upload": uploaded("bad.csv", b"question,answer\n")}
    assert data_source_summary(TrainSettings(data_source="upload"), bad, None) == (
        "uploaded `bad.csv` (not usable: see below)"
    )
    hub = {"hub_dataset": "someone/instructions", "hub_split": "train"}
    assert data_source_summary(TrainSettings(data_source="hub"), hub, None) == (
        "hub dataset `someone/instructions` (train, not usable: see below)"
    )


def test_offline_tokenizer_is_deterministic_and_round_trips(data, tokenizer):
    again = build_offline_tokenizer(tokenizer_corpus(data))
    assert again.get_vocab() == tokenizer.get_vocab()
    assert tokenizer.eos_token == tokenizer.pad_token == "<|endoftext|>"
    text = format_prompt("What is 12 + 5?") + "Answer: 17 — ünïcode ok"
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_labels_mask_prompt_and_padding(data, tokenizer):
    rows = data.head(4)
    examples, dropped = tokenize_examples(rows, tokenizer, max_length=128)
    assert dropped == 0
    for example, (prompt, response) in zip(
        examples, zip(rows["prompt"], rows["response"], strict=True), strict=True
    ):
        n_prompt = len(
            tokenizer(PROMPT_TEMPLATE.format(prompt=prompt), add_special_tokens=False)["input_ids"]
        )
        assert example["labels"][:n_prompt] == [-100] * n_prompt
        learned = example["labels"][n_prompt:]
        assert learned == example["input_ids"][n_prompt:] and learned[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(learned[:-1]) == response
    batch = collate_batch(examples, tokenizer.pad_token_id)
    lengths = [len(e["input_ids"]) for e in examples]
    assert batch["input_ids"].shape == (4, max(lengths))  # padded to the longest in the batch only
    assert batch["attention_mask"].sum(dim=1).tolist() == lengths
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_loss_counts_response_tokens_only():
    labels = torch.tensor([[-100, -100, 5, 6, -100]])
    logits = torch.randn(1, 5, 10)
    expected = torch.nn.functional.cross_entropy(logits[0, [1, 2]], torch.tensor([5, 6]))
    torch.testing.assert_close(causal_lm_loss(logits, labels), expected)
    logits[0, 3:] = 1e4  # positions whose next label is -100 must not matter
    torch.testing.assert_close(causal_lm_loss(logits, labels), expected)


def test_prompts_longer_than_max_length_are_dropped(data, tokenizer):
    examples, dropped = tokenize_examples(data.head(5), tokenizer, max_length=4)
    assert examples == [] and dropped == 5


def test_token_statistics_share_of_loss_tokens(data, tokenizer):
    examples, _ = tokenize_examples(data, tokenizer, max_length=128)
    stats = token_statistics(make_loader(examples, 16, tokenizer.pad_token_id, shuffle=False))
    assert stats["real_tokens"] == sum(len(e["input_ids"]) for e in examples)
    assert stats["loss_tokens"] == sum(sum(label != -100 for label in e["labels"]) for e in examples)
    assert 0 < stats["loss_share_of_padded"] < stats["loss_share_of_real"] < 1


def test_a_dataset_loads_through_datasets_with_its_columns_mapped_and_the_upload_rules(tmp_path):

    rows = [{"instruction": f"Say {i}.", "output": str(i), "extra": "x"} for i in range(30)]
    rows += [rows[0], {"instruction": "", "output": "empty prompt", "extra": "x"}]
    folder = tmp_path / "my-dataset"
    folder.mkdir()
    (folder / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    frame, errors, warnings = load_hub_dataset(str(folder), "instruction", "output", "train", 100)
    assert errors == [] and len(frame) == 30 and set(frame["split"]) == {"train", "eval"}
    assert frame.iloc[3]["prompt"] == "Say 3." and frame.iloc[3]["response"] == "3"
    assert any("duplicate" in w for w in warnings) and any("empty" in w for w in warnings)
    frame, errors, _ = load_hub_dataset(str(folder), "question", "output", "train", 100)
    assert (
        frame is None and "has no column `question`; its columns are `instruction`, `output` and" in errors[0]
    )
    frame, errors, _ = load_hub_dataset(str(folder), "instruction", "output", "train", 5)
    assert frame is None and "at least" in errors[0]  # the row cap applies before the minimum-rows rule
    frame, errors, _ = load_hub_dataset(str(folder), "instruction", "output", "test", 100)
    assert frame is None and "could not be loaded with `datasets`: Bad split: test" in errors[0]


def test_a_hub_dataset_is_streamed_so_only_the_rows_asked_for_are_read(tmp_path, monkeypatch):
    """Any viewer may type a hub id: a terabyte dataset must not be downloaded to take 2,000 of its rows."""
    import datasets

    folder = tmp_path / "big"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        "\n".join(json.dumps({"instruction": f"s{i}", "output": "x"}) for i in range(5_000))
    )
    calls, real = [], datasets.load_dataset

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    frame, errors, _ = load_hub_dataset(str(folder), "instruction", "output", "train", 40)
    assert errors == [] and len(frame) == 40 and calls == [{"split": "train", "streaming": True}]


def test_a_hub_dataset_without_network_gets_a_clear_message(monkeypatch):

    monkeypatch.setattr(llm_datasets, "hub_status", lambda timeout=3.0: False)
    frame, errors, _ = load_hub_dataset("someone/instructions", "instruction", "output")
    assert frame is None and "cannot be reached" in errors[0] and "built-in set still works" in errors[0]
    frame, errors, _ = load_hub_dataset("  ", "instruction", "output")
    assert frame is None and "no dataset id" in errors[0]


def test_hyperparameter_text_counts_the_examples_of_the_data_that_runs(data):
    from transformers import GPT2Config

    settings = TrainSettings(batch_size=16)
    why = lora_plan(GPT2Config(n_layer=1, n_embd=64, n_head=4), settings)
    upload, errors, _ = validate_upload("data.csv", csv_bytes(GOOD_ROWS))
    assert errors == []
    count = train_example_count(upload)
    assert count == (upload["split"] == "train").sum() == 24  # 30 rows, a fifth held out
    text = hyperparameter_text(settings, why, count)
    assert "24 training examples" in text and "2 steps per" in text and "160" not in text
    builtin = hyperparameter_text(settings, why, train_example_count(data))
    assert "160 training examples" in builtin and "10 steps per" in builtin
    # the alpha and learning-rate claims carry their sources, not a rule of thumb
    assert "heuristic" in text and "use_rslora" in text and "2e-4" in text and "10×" not in text
    assert train_example_count(None) == 0


def test_a_marimo_run_viewer_cannot_read_a_server_folder_as_a_dataset(tmp_path, monkeypatch):
    """A typed path would let any viewer read the server's files (the preview shows their rows)."""
    folder = tmp_path / "private-data"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        "\n".join(json.dumps({"instruction": f"s{i}", "output": "x"}) for i in range(30))
    )
    monkeypatch.chdir(tmp_path)
    asked = []
    monkeypatch.setattr(llm_datasets, "hub_status", lambda timeout=3.0: asked.append(1) or False)
    for typed in (str(folder), "private-data", "./private-data", "~/x", "../private-data", "/etc", "a/b/c"):
        frame, errors, _ = load_hub_dataset(typed, "instruction", "output", allow_local=False)
        assert frame is None and errors[0].startswith(
            "Give a hub dataset id (`owner/name`). Folders on the server"
        )
        assert "--allow-server-paths" in errors[0]
    assert asked == []  # refused before anything is looked up
    frame, errors, _ = load_hub_dataset("someone/instructions", "instruction", "output", allow_local=False)
    assert "cannot be reached" in errors[0]  # a hub id still goes to the hub
    frame, errors, _ = load_hub_dataset("private-data", "instruction", "output")  # marimo edit: allowed
    assert errors == [] and len(frame) == 30
    settings = TrainSettings(data_source="hub", server_paths=False)
    frame, errors, _ = choose_dataset(settings, {"hub_dataset": str(folder)})
    assert frame is None and "Folders on the server are off" in errors[0]


def test_a_viewer_cannot_reach_the_servers_files_through_datasets_own_loaders(tmp_path, monkeypatch):
    """`datasets` reads `text`, `csv`, `json`… as its loaders over the working folder's files; a viewer's
    request never carries the owner's token; a `.py` id is a script `datasets` refuses."""
    import datasets

    (tmp_path / "secret.txt").write_text("SECRET_TOKEN=abc123\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(llm_datasets, "hub_status", lambda timeout=3.0: True)
    calls = []

    def no_hub(*args, **kwargs):
        calls.append((args, kwargs))
        raise ValueError("not found")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    for typed in (
        "text",
        "csv",
        "json",
        "parquet",
        "imagefolder",
        "hf://datasets/x/y",
        "https://x.org/y",
        "a/b/c",
    ):
        frame, errors, _ = load_hub_dataset(typed, "text", "text", allow_local=False)
        assert frame is None and errors[0].startswith("Give a hub dataset id (`owner/name`)"), typed
    assert calls == []
    frame, errors, _ = load_hub_dataset("someone/instructions", "instruction", "output", allow_local=False)
    assert calls == [(("someone/instructions",), {"split": "train", "streaming": True, "token": False})]
    assert "could not be loaded with `datasets`: not found" in errors[0]
    for typed in ("evil.py", "o/evil.py"):
        frame, errors, _ = load_hub_dataset(typed, "instruction", "output")
        assert frame is None and "dataset scripts are not supported" in errors[0]


def test_a_hub_dataset_in_alpacas_layout_keeps_its_input_and_the_row_count_is_capped_on_the_server(
    tmp_path, monkeypatch
):
    folder = tmp_path / "alpaca"
    folder.mkdir()
    rows = [
        {"instruction": f"Add {i} and 1", "input": "" if i % 2 else f"in base {i}", "output": str(i + 1)}
        for i in range(40)
    ]
    (folder / "train.jsonl").write_text("\n".join(map(json.dumps, rows)))
    frame, errors, warnings = load_hub_dataset(str(folder), "instruction", "output", "train", 100)
    assert (
        errors == [] and len(frame) == 40 and warnings[0] == "Added `input` below `instruction` where filled."
    )
    prompts = set(frame["prompt"])
    assert "Add 0 and 1\n\nin base 0" in prompts and "Add 1 and 1" in prompts
    monkeypatch.setattr(llm_datasets, "HUB_MAX_ROWS", 25)  # a hand-made request past the box's maximum
    frame, errors, _ = load_hub_dataset(str(folder), "instruction", "output", "train", 10**9)
    assert errors == [] and len(frame) == 25


def test_deeply_nested_json_and_a_first_record_without_the_columns_are_handled():
    for name, data in (
        ("deep.json", b"[" * 100_000),
        ("deep.jsonl", b"[" * 100_000),
        ("deep2.jsonl", b'{"a":' * 100_000),
    ):
        frame, errors, _ = validate_upload(name, data)
        assert frame is None and "nested too deeply" in errors[0], (name, errors)
    rows = [{}] + [{"prompt": f"Say {i}", "response": str(i)} for i in range(12)]
    frame, errors, warnings = validate_upload("late.json", json.dumps(rows).encode())
    assert (
        errors == [] and len(frame) == 12 and warnings == ["Skipped 1 row with an empty prompt or response."]
    )
