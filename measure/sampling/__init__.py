"""Getting samples from a model: model references (model_source), prompts and the EOS rule (prompts), the
HF/vLLM backends (backends), the compact decoder (decode), decode planning by rows (batching), the sampler
(sample), its resumable cache (sample_cache) and multi-process ranks (ranks). Imports the rooms below it,
`scoring` included only for the settings (scoring/config.py)."""
