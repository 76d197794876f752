"""kft: LoRA fine-tuning of Llama 3.1 8B on Korean safety conversations, and a base-vs-LoRA comparison."""

__version__ = "0.1.0"
