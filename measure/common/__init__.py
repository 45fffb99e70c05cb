"""Plumbing every other room stands on: usage errors and suggestions (errors), value checks (values),
`key=value` overrides (overrides), strict YAML (yamlload), files, JSON/JSONL and provenance (io) and the
machine a run measured on (machine). The lowest room: it imports nothing above it. `train/` may import it
directly, next to the face (`measure`)."""
