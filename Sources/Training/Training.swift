// Training module: LoRA fine-tuning of the expert on contrastive soft labels (issue 8).
//
//   LoRA.swift            LoRATarget / LoRAConfig, LoRAAdapter (params | grads | Adam m | v in one
//                         allocation), keyed dropout masks, loraForward / loraBackward kernels
//   SoftLabelLoss.swift   SoftLabel (the original's dense-label semantics) and the KL loss fwd/bwd
//   FrozenWeights.swift   the frozen base (f32 or BF16 as stored, mmapped) for the training forward
//   TrainingModel.swift   ActivationPlan (one allocation) and the model forward/backward by hand
//   Optimizer.swift       AdamW, linear schedule, gradient norm and clipping
//   Dataset.swift         samples.jsonl → model inputs (ChatML prompt + prefix), truncation, split
//   PEFT.swift            adapter_config.json + adapter_model.safetensors, both ways
//   Trainer.swift         the loop: data order, accumulation, checkpoints, resume, SIGTERM
//   Metrics.swift         StepMetrics and metrics.jsonl (written and read by MetricsLog)
//
// Attention's backward lives beside its forward in Sources/Tensors/AttentionBackward.swift.
