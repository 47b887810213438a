// Training module: LoRA fine-tuning (forward/backward by hand, AdamW, PEFT adapters).
