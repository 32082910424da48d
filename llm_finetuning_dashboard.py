# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "marimo==0.25.2",
#     "torch>=2.4",
#     "transformers>=5,<6",
#     "tokenizers>=0.20",
#     "peft>=0.17",
#     "safetensors>=0.4",
#     "pandas>=3.0",
#     "altair>=6,<7",
#     "nvidia-ml-py>=12",
#     "psutil>=5.9",
# ]
# ///
"""Fine-tune GPT-2 or a Llama-family model with LoRA: seven visible steps, evaluated before/after, saved in PEFT's format."""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="LoRA fine-tuning")

with app.setup(hide_code=True):
    # Every session of `marimo run` is a thread of one server process running this block: the first imports of
    # torch and transformers happen under one process-wide lock that marimo's own start of a session waits for
    # too (two threads importing torch at once can break it for every session: see first_imports.py).
    import threading
    import time

    from gpu_notebooks.first_imports import import_lock

    with import_lock():
        import marimo as mo
        import pandas as pd
        import torch

        # The package's modules import torch and transformers too: under the same lock.
        from gpu_notebooks.cli import cli_options
        from gpu_notebooks.gpu.gpm import GpmSampler
        from gpu_notebooks.gpu.lock import gpu_turn
        from gpu_notebooks.llm_finetuning import (
            adapter as adapters,
            cards,
            charts,
            inference,
            lora,
            models,
            precision,
            settings as choices,
            steps as seven_steps,
        )
        from gpu_notebooks.llm_finetuning.datasets import (
            HUB_MAX_ROWS,
            UPLOAD_MAX_BYTES,
            choose_dataset,
            data_source_summary,
        )
        from gpu_notebooks.llm_finetuning.environment import describe_environment, device_label, device_status
        from gpu_notebooks.llm_finetuning.estimates import planned_run, run_model_facts, training_memory
        from gpu_notebooks.llm_finetuning.evaluation import per_task_scores
        from gpu_notebooks.llm_finetuning.explain import (
            lora as explain_lora,
            memory as explain_memory,
            speed as explain_speed,
        )
        from gpu_notebooks.llm_finetuning.explain.inference import (
            inference_cost_text,
            try_it_intro,
            try_it_note,
        )
        from gpu_notebooks.llm_finetuning.explain.results import generations_note
        from gpu_notebooks.llm_finetuning.explain.workflow import how_it_works_text, steps_heading_text
        from gpu_notebooks.llm_finetuning.formatting import fmt_bytes, fmt_count
        from gpu_notebooks.llm_finetuning.inference_cost import cost_table
        from gpu_notebooks.llm_finetuning.loading import default_choices, model_availability_note
        from gpu_notebooks.llm_finetuning.loss import batch_loss, causal_lm_loss
        from gpu_notebooks.llm_finetuning.probe import run_utilization_probe, utilization_probe_unavailable
        from gpu_notebooks.llm_finetuning.progress import RunProgress, follow_progress
        from gpu_notebooks.llm_finetuning.schedule import lr_at
        from gpu_notebooks.llm_finetuning.telemetry import gpm_status, nvml_device_index, telemetry_cards
        from gpu_notebooks.llm_finetuning.tokens import answer_token_budget
        from gpu_notebooks.llm_finetuning.training import device_memory, plain_train_step
        from gpu_notebooks.llm_finetuning.warmup import start_warm_up, warm_up_note
        from gpu_notebooks.text import count_of
    # Per session (this block runs once per session): `-- --smoke --model tiny-llama` → {"smoke": "", "model": ...}.
    CLI_OPTIONS = cli_options()
    CLI_FLAGS = set(CLI_OPTIONS)
    SMOKE = "smoke" in CLI_FLAGS
    # Under `marimo run` each viewer picks only the adapters its own session trained (None: all, one person's).
    ADAPTER_OWNER = inference.adapter_owner(mo.app_meta().mode)


@app.cell(hide_code=True)
def _(planned, settings, why):
    mo.md(
        explain_lora.intro_text(why, settings.model_source, precision.dtype_name(planned["plan"].param_dtype))
    )
    return


@app.cell
def _():
    environment = describe_environment()
    # A background thread, once per process: the first Train click is as fast as later ones. Step 1 reads
    # `warm_up`, so this cell always runs before it (also in a headless --smoke run).
    warm_up = (
        start_warm_up(torch.device("cuda"))
        if environment["cuda_available"] and "no-warmup" not in CLI_FLAGS
        else {}
    )
    return environment, warm_up


@app.cell(hide_code=True)
def _(environment):
    cards.environment_cards(environment)
    return


@app.cell(hide_code=True)
def _(environment):
    mo.md(
        explain_lora.settings_intro_text(
            default_choices(environment["cuda_available"]), environment["cuda_available"]
        )
    )
    return


@app.cell
def _(environment):
    _defaults = default_choices(environment["cuda_available"])
    settings_controls = mo.md(r"""
        **Model and precision** — {model} {precision}
        {local_dir}

        **LoRA** — {rank} {alpha} {dropout}
        {targets}

        **Optimization** — {learning_rate} {warmup_pct} {epochs}
        {batch_size} {max_length} {seed} {speed}

        **Data** — {data_source}
        """).batch(
        model=mo.ui.dropdown(choices.MODEL_CHOICES, value=_defaults["model"], label="model source"),
        local_dir=mo.ui.text(placeholder="/path/to/a/gpt2/folder", label="local directory", full_width=True),
        precision=mo.ui.dropdown(choices.PRECISION_CHOICES, value=_defaults["precision"], label="precision"),
        rank=mo.ui.slider(steps=[4, 8, 16, 32, 64], value=8, show_value=True, debounce=True, label="rank r"),
        alpha=mo.ui.slider(
            steps=[4, 8, 16, 32, 64, 128], value=16, show_value=True, debounce=True, label="alpha"
        ),
        dropout=mo.ui.slider(0.0, 0.3, 0.05, value=0.05, show_value=True, debounce=True, label="dropout"),
        targets=mo.ui.multiselect(
            choices.TARGET_CHOICES, value=list(choices.TARGET_CHOICES), label="target modules"
        ),
        learning_rate=mo.ui.dropdown(choices.LEARNING_RATES, value="auto", label="learning rate"),
        warmup_pct=mo.ui.slider(
            0, 30, 5, value=10, show_value=True, debounce=True, label="warm-up % of steps"
        ),
        epochs=mo.ui.dropdown(choices.EPOCH_CHOICES, value="auto", label="epochs"),
        batch_size=mo.ui.dropdown(["4", "8", "16", "32"], value="16", label="batch size"),
        max_length=mo.ui.dropdown(["64", "128", "256", "512"], value="128", label="max sequence length"),
        seed=mo.ui.number(0, 2**31 - 1, 1, value=42, label="seed"),
        speed=mo.ui.dropdown(
            list(choices.SPEED_CHOICES), value=next(iter(choices.SPEED_CHOICES)), label="training path"
        ),
        data_source=mo.ui.radio(
            choices.DATA_CHOICES, value=next(iter(choices.DATA_CHOICES)), label="data", inline=True
        ),
    )
    # Shown under the data choice only when it is theirs (upload, hub dataset): the summary names what is used.
    upload_control = mo.ui.file(
        filetypes=[".csv", ".jsonl", ".json"],
        max_size=UPLOAD_MAX_BYTES,  # marimo refuses a larger file in the browser; validate_upload checks again
        label=f"upload CSV, JSONL or JSON (prompt and response columns; at most {UPLOAD_MAX_BYTES / 1e6:.0f} MB)",
    )
    hub_controls = mo.md("{hub_dataset} {prompt_column} {response_column} {hub_split} {max_rows}").batch(
        hub_dataset=mo.ui.text(placeholder="e.g. an instruction dataset id", label="hub dataset id"),
        prompt_column=mo.ui.text(value="instruction", label="prompt column"),
        response_column=mo.ui.text(value="output", label="response column"),
        hub_split=mo.ui.text(value="train", label="split"),
        max_rows=mo.ui.number(10, HUB_MAX_ROWS, 10, value=2000, label="rows (first N)"),
    )
    train_button = mo.ui.run_button(
        label="Train", kind="success", tooltip="Run the seven steps below with the settings on screen"
    )
    train_progress = RunProgress()  # this session's run, as the step cells report it to the status line
    return hub_controls, settings_controls, train_button, train_progress, upload_control


@app.cell
def _(hub_controls, settings, settings_controls, train_button, upload_control):
    _note = model_availability_note(settings)  # None: nothing to say (an offline model or a local folder)
    _data_fields = {"upload": [upload_control], "hub": [hub_controls]}.get(settings.data_source, [])
    mo.vstack(
        [
            settings_controls,
            *_data_fields,
            *([_note] if _note is not None else []),
            mo.hstack([train_button], justify="start"),
        ]
    )
    return


@app.cell(hide_code=True)
def _(train_button, train_progress):
    # The steps run ~1,000 px below the button: this line says which one runs and for how long, redrawn by a
    # thread while they do (it stops when the run ends, this cell re-runs, or the session's kernel is gone).
    if train_button.value and not SMOKE:
        train_progress.press()
        _kernel = threading.current_thread()
        mo.Thread(
            target=follow_progress,
            args=(train_progress, lambda text: mo.output.replace(mo.md(text))),
            kwargs={"should_exit": lambda: mo.current_thread().should_exit, "alive": _kernel.is_alive},
            daemon=True,
        ).start()
    mo.md("_`--smoke`: the steps below run without a click._" if SMOKE else train_progress.text())
    return


@app.cell
def _(hub_controls, settings_controls, upload_control):
    settings = choices.settings_from_form(
        settings_controls.value,
        smoke=SMOKE,
        smoke_model=CLI_OPTIONS.get("model") or "tiny",
        server_paths=choices.server_paths_allowed(mo.app_meta().mode, CLI_OPTIONS),  # never a viewer's path
    )
    data_form = {**hub_controls.value, "upload": upload_control.value}
    dataset, data_errors, data_warnings = choose_dataset(settings, data_form)
    return data_errors, data_form, data_warnings, dataset, settings


@app.cell(hide_code=True)
def _(data_errors, data_form, data_warnings, dataset, settings):
    _source = "smoke test (`--smoke`)" if SMOKE else "on screen: Train uses these"
    _summary = mo.md(
        f"**Settings ({_source}):** `{settings.model_source}` · {settings.precision.upper()} · r={settings.rank}, "
        f"alpha={settings.alpha}, dropout={settings.dropout} · targets {', '.join(settings.target_modules)} · "
        f"lr {settings.learning_rate or 'auto'} · epochs {settings.epochs or 'auto'} · batch "
        f"{settings.batch_size} · max length {settings.max_length} · seed {settings.seed} · **data: "
        f"{data_source_summary(settings, data_form, dataset)}**"
    )
    _problems = [mo.callout(mo.md("\n\n".join(data_errors)), kind="danger")] if data_errors else []
    _notes = [mo.callout(mo.md("\n\n".join(data_warnings)), kind="warn")] if data_warnings else []
    _preview = []
    if dataset is not None:
        _counts = dataset.groupby(["task", "split"]).size().unstack(fill_value=0).reset_index()
        _preview = [
            mo.md(
                f"### Data: {len(dataset)} rows — {', '.join(f'{k} {v}' for k, v in dataset['split'].value_counts().items())}"
            ),
            mo.ui.table(dataset, page_size=10, selection=None, wrapped_columns=["prompt", "response"]),
            mo.accordion({"Rows per task and split": mo.ui.table(_counts, selection=None, pagination=False)}),
        ]
    mo.vstack([_summary, *_problems, *_notes, *_preview])
    return


@app.cell(hide_code=True)
def _(dataset, environment, settings):
    # The offline tokenizer's vocabulary sizes the tiny models; every other config is known without loading.
    _vocab = (
        len(models.build_offline_tokenizer(models.tokenizer_corpus(dataset)))
        if settings.model_source in ("tiny", "tiny-llama")
        else None
    )
    _config = models.planned_config(settings, _vocab)
    why = None if _config is None else lora.lora_plan(_config, settings)
    planned = planned_run(settings, environment)
    return planned, why


@app.cell(hide_code=True)
def _(dataset, planned, settings, why):
    mo.stop(
        why is None,
        mo.md(
            "_Explanations with numbers appear once the model's config is known (GPT-2 or "
            "Llama family, on disk or built in)._"
        ),
    )
    _tokens = settings.batch_size * settings.max_length  # before a run: the most one batch can hold
    _plan, _speed = planned["plan"], planned["speed"]
    _memory = explain_memory.training_memory_text(why, settings, _plan, _speed, _tokens, _tokens)
    _estimated = sum(training_memory(why, _plan, _speed, _tokens, _tokens).values())
    _conv1d = {
        "Why GPT-2's Conv1D is unusual, and what it means for LoRA": mo.md(explain_lora.why_conv1d_text(why))
    }
    mo.accordion(
        {
            "Why LoRA works — with this model's numbers": mo.md(explain_lora.why_lora_text(why, settings)),
            "Why mixed precision (FP16), and why a GradScaler": mo.md(explain_speed.why_fp16_text(_plan)),
            **(_conv1d if why["architecture"] == "gpt2" else {}),
            "Hyperparameter choices": mo.md(
                explain_lora.hyperparameter_text(settings, why, explain_lora.train_example_count(dataset))
            ),
            f"Where training memory goes at {settings.batch_size} × {settings.max_length}, and what "
            "checkpointing and accumulation trade": mo.md(_memory),
            'TF32: what `set_float32_matmul_precision("high")` changes, and for this run': mo.md(
                explain_speed.tf32_text(_plan, planned["device_type"], planned["compute_capability"])
            ),
            "QLoRA: the next memory lever (a pointer)": mo.md(
                explain_memory.qlora_text(why, _plan, settings.model_source, _estimated)
            ),
            "Compute-, memory- or overhead-bound: this run on the roofline": mo.md(
                explain_speed.roofline_text(
                    why, _plan, _speed, planned["device_type"], planned["device_name"], _tokens, _tokens
                )
            ),
            "Why the fast training path is fast — what each lever buys": mo.md(
                explain_speed.why_fast_text(settings, why)
            ),
            "What step 5's GPU activity means: MFU, SM and Tensor Core activity, energy": mo.md(
                explain_speed.why_mfu_text(why)
            ),
        },
        multiple=True,
    )
    return


@app.cell(hide_code=True)
def _():
    mo.md(steps_heading_text())
    return


@app.cell
def _(data_errors, dataset, settings, train_button, train_progress, warm_up):
    mo.stop(not (train_button.value or SMOKE), mo.md("_Press **Train** to run the seven steps._"))
    train_progress.begin(1)
    mo.stop(
        train_progress.halt_if(dataset is None),
        mo.callout(mo.md("Fix the data problem above first: " + " ".join(data_errors)), kind="danger"),
    )
    clicked_at = time.perf_counter()
    device = precision.choose_device()
    _precision, _why_precision = precision.choose_precision(settings, device)
    plan = precision.resolve_precision(_precision, device.type, precision.bf16_native(device))
    seven_steps.step_done(
        1,
        "environment and precision",
        time.perf_counter() - clicked_at,
        f"Device **{device_label(device)}** · requested **{settings.precision.upper()}** → running "
        f"**{plan.name}** · {seven_steps.seed_note(device, settings.seed)}.\n\n"
        f"{_why_precision} {plan.note}" + warm_up_note(device, warm_up),
        kind=precision.precision_callout_kind(plan),
    )
    return clicked_at, device, plan


@app.cell
def _(dataset, device, plan, settings, train_progress):
    train_progress.begin(2)
    _started = time.perf_counter()
    run, _facts = seven_steps.load_step(
        settings,
        dataset,
        device,
        plan,
        on_wait=lambda: seven_steps.show_waiting(device, train_progress),
        on_turn=train_progress.has_turn,
    )
    mo.stop(
        train_progress.halt_if(_facts["out_of_memory"]),
        mo.callout(
            mo.md(
                f"**Step 2 stopped: the GPU has no room for `{settings.model_source}`** (out of memory while "
                "copying the weights). Another program may be using the card: free it, or pick a smaller "
                "model, and press Train again."
            ),
            kind="danger",
        ),
    )
    _trainable, _total = lora.parameter_counts(run.model)
    _dtype = str(next(run.model.parameters()).dtype).replace("torch.", "")
    _waited = f" · waited {_facts['waited_s']:.1f} s for its turn" if _facts["waited_s"] >= 0.1 else ""
    _done = seven_steps.step_done(
        2,
        "tokenizer and model loaded",
        time.perf_counter() - _started,
        f"**{run.model_name}** · {fmt_count(_total)} parameters (tied lm_head counted once) · "
        f"weights in **{_dtype}** · vocabulary {len(run.tokenizer):,} · device memory "
        f"{fmt_bytes(device_memory(device)['allocated'])} allocated"
        + ("" if device.type == "cuda" else " (CPU: host RAM, not tracked here)")
        + f" · *auto* resolved to learning rate {run.settings.learning_rate:g}, {count_of(run.settings.epochs, 'epoch')}"
        + f"{_waited}.\n\n{explain_memory.memory_scope_note(run)}",
    )
    _warning = mo.callout(mo.md(f"**No `{settings.model_source}`:** {_facts['load_warning']}"), kind="warn")
    mo.output.replace(mo.vstack([_warning, _done]) if _facts["load_warning"] else _done)
    return (run,)


@app.cell
def _(run, train_progress):
    train_progress.begin(3)
    _started = time.perf_counter()
    lora_table, _problem = seven_steps.inject_step(run)
    mo.stop(
        train_progress.halt_if(_problem is not None),
        mo.callout(mo.md(f"**Step 3 stopped:** {_problem} The model was released."), kind="danger"),
    )
    trainable_params, total_params = lora.parameter_counts(run.model)
    parameter_groups = lora.parameter_breakdown(run.model)
    run_facts = run_model_facts(run)  # read now: step 7 frees the model
    _kinds = lora_table["type"].str.split(" ").str[0].value_counts().to_dict()
    mo.vstack(
        [
            seven_steps.step_done(
                3,
                "LoRA injected",
                time.perf_counter() - _started,
                f"Wrapped **{len(lora_table)} layers** ({', '.join(f'{n} {k}' for k, n in _kinds.items())}, "
                f"recognised by type) · trainable **{trainable_params:,}** of {total_params:,} parameters = "
                f"**{100 * trainable_params / total_params:.3f}%** · frozen base "
                f"{total_params - trainable_params:,} · sum of the table's LoRA column "
                f"{int(lora_table['LoRA params'].sum()):,} ✓",
            ),
            mo.accordion(
                {"Wrapped layers": mo.ui.table(lora_table, page_size=8, selection=None)}
                | cards.ran_model_explanation(run)
            ),
        ]
    )
    return lora_table, parameter_groups, run_facts, total_params, trainable_params


@app.cell
def _(dataset, lora_table, run, train_progress):
    train_progress.begin(4)
    _started = time.perf_counter()
    token_stats, _problem = seven_steps.prepare_step(run, dataset)
    mo.stop(
        train_progress.halt_if(_problem is not None),
        mo.callout(mo.md(f"**Step 4 stopped:** {_problem} The model was released."), kind="danger"),
    )
    _train = token_stats["train"]
    mo.vstack(
        [
            seven_steps.step_done(
                4,
                "data tokenized; loaders, optimizer, learning-rate schedule and scaler ready",
                time.perf_counter() - _started,
                f"{token_stats['train_examples']} train / {token_stats['eval_examples']} eval examples "
                f"({token_stats['dropped']} dropped: prompt longer than max length) · {token_stats['steps_per_epoch']} "
                f"steps/epoch × {count_of(run.settings.epochs, 'epoch')} = **{token_stats['total_steps']} steps**, "
                f"{token_stats['warmup_steps']} warm-up · AdamW on {len(lora_table) * 2} adapter tensors only · "
                f"GradScaler **{'on' if run.plan.use_grad_scaler else 'off'}**"
                + (
                    ""
                    if run.plan.use_grad_scaler or not run.scaler.is_enabled()
                    else " (a scale-1 guard skips inf/NaN steps)"
                )
                + f"\n\nTraining path **{run.speed.name}**: {run.speed.note}",
            ),
            mo.hstack(
                [
                    mo.stat(
                        f"{_train['real_tokens']:,}",
                        label="real tokens / epoch",
                        caption=f"mean length {_train['mean_length']:.1f}, max {_train['max_length']}",
                        bordered=True,
                    ),
                    mo.stat(
                        f"{100 * _train['loss_share_of_real']:.1f}%",
                        label="tokens that carry loss",
                        caption="response + eos; prompt and padding are -100",
                        bordered=True,
                    ),
                    mo.stat(
                        f"{100 * _train['padding_share']:.1f}%",
                        label="padding",
                        caption="dynamic padding per batch",
                        bordered=True,
                    ),
                ],
                widths="equal",
            ),
        ]
    )
    return (token_stats,)


@app.cell
def _(dataset, run, token_stats, train_progress):
    train_progress.begin(5)
    _eval_frame = dataset[dataset["split"] == "eval"]
    answer_tokens = answer_token_budget(run.tokenizer, dataset["response"])
    mo.output.clear()
    _started, _last_draw = time.perf_counter(), [0.0]
    with mo.status.progress_bar(
        total=token_stats["total_steps"], title="Step 5 — training", show_eta=True, show_rate=True
    ) as _bar:
        mo.output.append(mo.md("_Evaluating the base model first (the “before”)…_"))

        def _draw(record, sampler, so_far):
            if record["kind"] == "train":
                _bar.update(
                    subtitle=f"epoch {record['epoch']} · loss {record['loss']:.3f} · "
                    f"{record['tokens_per_s']:,.0f} tok/s · {device_status(sampler)}"
                    + (f" · MFU {100 * record['mfu']:.1f}%" if record.get("mfu") else "")
                    + (f" · {gpm_status(so_far['gpm'])}" if gpm_status(so_far["gpm"]) else "")
                )
            if time.perf_counter() - _last_draw[0] > 0.5 or record["step"] == run.total_steps:
                mo.output.replace_at_index(
                    charts.loss_chart(so_far["train_records"], so_far["eval_records"], title="Loss (live)"), 1
                )
                _last_draw[0] = time.perf_counter()

        _result = seven_steps.train_step_body(run, _eval_frame, answer_tokens, on_record=_draw)
    before, before_generations = _result["before"], _result["before_generations"]
    eval_records, stop_reason, sampler = _result["eval_records"], _result["stop_reason"], _result["sampler"]
    history, device_samples = pd.DataFrame(_result["train_records"]), _result["samples"]
    mo.output.replace(
        mo.vstack(
            [
                cards.training_summary(
                    history,
                    eval_records,
                    stop_reason,
                    _result["train_seconds"],
                    time.perf_counter() - _started,
                    device_samples,
                ),
                telemetry_cards(_result, history) if stop_reason is None else None,
            ]
        )
    )
    return (
        before,
        before_generations,
        device_samples,
        eval_records,
        history,
        answer_tokens,
        sampler,
        stop_reason,
    )


@app.cell(hide_code=True)
def _(history, run, run_facts, stop_reason, token_stats):
    mo.stop(stop_reason is not None or history.empty, None)
    _measured = {
        "device_type": run.device.type,
        "peak": float(history["peak_mib"].max()) * 2**20 if run.device.type == "cuda" else None,
        "baseline": run.memory_baseline,
    }
    _train = token_stats["train"]
    mo.accordion(
        {
            "This run's memory: the estimate against what torch measured": mo.md(
                explain_memory.training_memory_text(
                    run_facts,
                    run.settings,
                    run.plan,
                    run.speed,
                    _train["max_batch_tokens"],
                    _train["max_batch_loss_tokens"],
                    measured=_measured,
                )
            )
        }
    )
    return


@app.cell
def _(answer_tokens, before, before_generations, dataset, run, stop_reason, train_progress):
    mo.stop(
        train_progress.halt_if(stop_reason is not None),
        mo.callout(mo.md(f"Step 6 skipped: training stopped — {stop_reason}"), kind="danger"),
    )
    train_progress.begin(6)
    _started = time.perf_counter()
    after, after_generations, _stop = seven_steps.evaluate_step(
        run, dataset[dataset["split"] == "eval"], answer_tokens
    )
    mo.stop(
        train_progress.halt_if(_stop is not None),
        mo.callout(
            mo.md(f"**Step 6 stopped.** {_stop and _stop.reason} {_stop and _stop.advice}"), kind="danger"
        ),
    )
    comparison = cards.compare_generations(before_generations, after_generations)
    mo.vstack(
        [
            seven_steps.step_done(
                6,
                "evaluated before vs after",
                time.perf_counter() - _started,
                f"{len(comparison)} held-out prompts, greedy decoding, up to {answer_tokens} new tokens.",
            ),
            cards.evaluation_cards(before, after),
            mo.md("**Generations for held-out prompts — before vs after** (✓ = exact match)"),
            mo.callout(
                mo.md(generations_note(before, after, before_generations, after_generations, run.model_name)),
                kind="info",
            ),
            mo.ui.table(
                comparison, page_size=10, selection=None, wrapped_columns=["prompt", "before", "after"]
            ),
            mo.accordion(
                {
                    "Scores per task": mo.ui.table(
                        per_task_scores(before_generations, after_generations),
                        selection=None,
                        pagination=False,
                    )
                }
            ),
        ]
    )
    return after, after_generations, comparison


@app.cell
def _(after, before, clicked_at, comparison, dataset, run, train_progress):
    train_progress.begin(7)
    _started = time.perf_counter()
    adapter_folder = adapters.adapter_folder_for(run)
    saved = seven_steps.save_step(
        run, adapter_folder, dataset[dataset["split"] == "eval"]["prompt"].head(8).tolist()
    )
    mo.stop(
        train_progress.halt_if(saved["failure"] is not None),
        mo.callout(
            mo.md(
                f"**Step 7 failed:** {saved['failure']}. The run's GPU memory was released "
                f"({cards.release_text(saved['release_report'], run.device)}). Press Train to run again."
            ),
            kind="danger",
        ),
    )
    click_to_result = time.perf_counter() - clicked_at
    adapter_zip = adapters.zip_folder(adapter_folder)
    adapters.keep_recent_adapters(adapter_folder, owner=ADAPTER_OWNER)  # the process keeps its last few
    train_progress.finish()
    mo.vstack(
        [
            seven_steps.step_done(
                7,
                "adapter saved, checked with PEFT, memory released",
                time.perf_counter() - _started,
                f"`{adapters.project_path(adapter_folder)}` "
                f"({', '.join(f'{k} {fmt_bytes(v)}' for k, v in saved['saved_files'].items())}; this server "
                f"keeps its last {adapters.ADAPTERS_KEPT} adapter folders, and `outputs/adapters` its newest "
                f"{adapters.ADAPTERS_ON_DISK} across restarts) · merged into the weights for inference, the "
                f"model gives the same logits: max |Δ| = **{saved['merge_max_diff']:.2e}** "
                f"{cards.check_mark(saved['merge_max_diff'], run.plan)} · `PeftModel.from_pretrained(base, folder)` "
                f"reproduces this app's logits: max |Δ| = **{saved['peft_max_diff']:.2e}** "
                f"{cards.check_mark(saved['peft_max_diff'], run.plan)} · "
                + cards.release_text(saved["release_report"], run.device),
            ),
            mo.download(
                adapter_zip, filename=f"{adapter_folder.name}.zip", label="Download the adapter (.zip)"
            ),
            cards.summary_cards(
                before, after, click_to_result, saved["peak_memory"], saved["release_report"], run
            ),
        ]
    )
    return adapter_folder, click_to_result, saved


@app.cell
def _(device_samples, eval_records, history, parameter_groups, sampler, stop_reason):
    mo.stop(history.empty, None)
    _charts = [
        mo.md("_Loss against step (train raw and smoothed, eval per epoch) is in step 5._"),
        charts.step_chart(
            history, "lr", "Learning-rate schedule (warm-up, then cosine decay)", "learning rate"
        ),
        charts.throughput_chart(history),
        charts.device_timeline_chart(device_samples, sampler.source)
        if len(device_samples)
        else mo.md("_No device samples._"),
        charts.parameter_chart(parameter_groups),
    ]
    mo.vstack([mo.md("## Charts" + (" (training stopped early)" if stop_reason else "")), *_charts])
    return


@app.cell
def _():
    # Step 7 sets it when it keeps an adapter: the picker lists the new folder (and a --smoke run generates).
    get_kept, set_kept = mo.state(None)
    return get_kept, set_kept


@app.cell
def _(adapter_folder, set_kept):
    set_kept(adapter_folder.name)
    return


@app.cell(hide_code=True)
def _(get_kept):
    get_kept()  # re-runs when step 7 keeps a new adapter
    # label → folder name (a viewer never sees a path, nor sends one); a viewer's list holds only its own
    _choices = inference.adapter_choices(ADAPTER_OWNER)
    try_controls = mo.md(
        try_it_intro(precision.choose_device().type, ADAPTER_OWNER is not None, adapters.ADAPTERS_KEPT)
        + "\n\n{prompt}\n\n{max_new_tokens} {decoding} {temperature} {top_p} {seed}\n\n{adapter}"
    ).batch(
        prompt=mo.ui.text_area(
            placeholder="e.g. Spell 'lemon' backwards.",
            full_width=True,
            label=f"prompt (at most {inference.PROMPT_MAX_CHARS:,} characters; the training template is applied)",
        ),
        max_new_tokens=mo.ui.slider(
            1, inference.MAX_NEW_TOKENS, value=48, show_value=True, label="max new tokens"
        ),
        decoding=mo.ui.radio(["greedy", "sampling"], value="greedy", inline=True, label="decoding"),
        temperature=mo.ui.slider(0.1, 2.0, 0.1, value=0.8, show_value=True, label="temperature"),
        top_p=mo.ui.slider(0.05, 1.0, 0.05, value=0.95, show_value=True, label="top-p"),
        seed=mo.ui.number(0, 2**31 - 1, 1, value=0, label="seed (sampling)"),
        adapter=mo.ui.dropdown(
            _choices,
            next(iter(_choices), None),
            label="adapter" if _choices else "adapter (none yet: press Train)",
        ),
    )
    generate_button = mo.ui.run_button(label="Generate", kind="success")
    mo.vstack([try_controls, generate_button])
    return generate_button, try_controls


@app.cell
def _(generate_button, get_kept, try_controls):
    mo.stop(not (generate_button.value or SMOKE), mo.md("_Type a prompt and press **Generate**._"))
    mo.stop(SMOKE and get_kept() is None, None)  # headless: one short generation once step 7 kept its adapter
    _request, _problem = inference.generation_request(try_controls.value, smoke=SMOKE)
    mo.stop(_problem is not None, mo.callout(mo.md(str(_problem)), kind="warn"))
    tried = inference.try_adapter(
        _request,
        precision.choose_device(),
        on_text=lambda texts, role: mo.output.replace(inference.generation_panes(texts, role)),
        on_wait=lambda message: mo.output.append(mo.callout(mo.md(message), kind="warn")),
        owner=ADAPTER_OWNER,
    )
    mo.stop(tried["problem"] is not None, mo.callout(mo.md(str(tried["problem"])), kind="warn"))
    _costs = tried["costs"]
    mo.vstack(
        [
            inference.generation_panes(tried["texts"], adapter=tried["adapter"], tokens=tried["tokens"]),
            mo.md(try_it_note(tried["model_name"])),
            mo.md(f"### What inference costs on {_costs['device_name']}: batch 1, KV cache, measured"),
            mo.ui.table(cost_table(_costs), selection=None, pagination=False),
            mo.md(f"_{tried['note']}_"),
            mo.callout(mo.md(inference_cost_text(_costs)), kind="info"),
        ]
    )
    return (tried,)


@app.cell(hide_code=True)
def _(environment):
    probe_button = mo.ui.run_button(
        label="Measure what utilization hides (about 5 s)"
        if environment["cuda_available"]
        else "Measure what utilization hides (needs a CUDA GPU)",
        disabled=not environment["cuda_available"],
        tooltip="Three short workloads on this GPU, under the GPU lease",
    )
    mo.vstack([mo.md(explain_memory.utilization_section_text(environment["cuda_available"])), probe_button])
    return (probe_button,)


@app.cell
def _(environment, probe_button):
    _reason = utilization_probe_unavailable(environment)
    mo.stop(_reason is not None, mo.md(f"_{_reason}_\n\n{explain_memory.utilization_reference_table_text()}"))
    mo.stop(not probe_button.value, mo.md("_Press the button to measure; nothing runs until then._"))
    _device = torch.device("cuda", torch.cuda.current_device())
    with gpu_turn(wait=False) as _held:
        mo.stop(
            not _held,
            mo.callout(
                mo.md(
                    "**The GPU is busy** (a training run or the benchmark app holds it). Press again when it is "
                    "free: measured beside another run, the workloads would mix."
                ),
                kind="warn",
            ),
        )
        _gpm = GpmSampler([nvml_device_index(_device)])
        with mo.status.spinner(title="Running three workloads on the GPU…"):
            probe_rows = run_utilization_probe(_device)
    mo.vstack(
        [
            mo.md(
                explain_memory.utilization_table_text(
                    probe_rows, f"measured just now on {environment['gpu']}"
                )
            ),
            mo.callout(
                mo.md(
                    explain_memory.utilization_probe_text(
                        probe_rows, "" if _gpm.available else _gpm.unavailable_reason
                    )
                    + "\n\n"
                    + explain_memory.utilization_reference_text()
                ),
                kind="info",
            ),
        ]
    )
    return


@app.cell(hide_code=True)
def _():
    mo.md(how_it_works_text())
    return


@app.cell(hide_code=True)
def _():
    import inspect

    _shown = {
        "LoRALayer — the frozen layer plus B·A, scaled": lora.LoRALayer,
        "plain_train_step — one optimizer step, written out": plain_train_step,
        "lr_at — the learning-rate schedule": lr_at,
        "batch_loss — the one place the loss is computed": batch_loss,
        "causal_lm_loss — the reference next-token loss": causal_lm_loss,
    }
    mo.vstack(
        [
            mo.md(r"""
    ## Read the code

    The cells above tell the story; the library they call lives in the package `gpu_notebooks/` beside this
    notebook, one concern a module. Below is the **real source** of the few functions this app is about, read
    from the package as it runs (`inspect.getsource`), so it is always what ran.

    | what | where |
    |---|---|
    | the LoRA layer, injection, merge | `gpu_notebooks/llm_finetuning/lora.py` (`LoRALayer`, `inject_lora`) |
    | **where the loss is computed** | `llm_finetuning/loss.py`: `batch_loss`, the one entry point (the chunked LM-head loss on the fast path, `causal_lm_loss` as its reference) |
    | **where the learning rate is set** | `llm_finetuning/schedule.py`: `lr_at` (warm-up, then cosine); `device_schedule` puts the same values on the GPU for the fast path |
    | the training step and loop | `llm_finetuning/training.py`: `plain_train_step`, `fast_train_step`, `train_steps` (host syncs marked `HOST SYNC`) |
    | which speed levers run | `llm_finetuning/speed.py`: `SpeedPlan`, `choose_speed_plan`, `apply_speed_plan` |
    | the seven steps' bodies | `llm_finetuning/steps.py` |
    | the GPU lease, the samplers | `gpu_notebooks/gpu/lock.py` (`GpuLease`, `gpu_turn`), `gpu/sampler.py`, `gpu/gpm.py`, `gpu/nvml.py` |
    | the learner texts | `llm_finetuning/explain/` (plain functions: this run's numbers in, markdown out) |
    """),
            mo.accordion(
                {
                    f"`{title.split(' — ')[0]}` — {title.split(' — ')[1]} ({inspect.getmodule(obj).__name__})": mo.md(
                        f"```python\n{inspect.getsource(obj)}```"
                    )
                    for title, obj in _shown.items()
                }
            ),
        ]
    )
    return


if __name__ == "__main__":
    app.run()
