"""llm_finetuning."""
