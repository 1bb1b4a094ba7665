"""Test-only emulators of SOC ingest paths (Elasticsearch ingest pipelines, Beats / Elastic Agent inputs)."""
