"""Placeholder: filled in by the agents work."""

from flask import Blueprint

bp = Blueprint("agents", __name__)
