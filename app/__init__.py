"""Dual MCP: trigger-driven workflows and LLM agents on Flask, Celery, PostgreSQL and Redis."""
