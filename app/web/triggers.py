"""Placeholder: filled in by the triggers work."""

from flask import Blueprint

bp = Blueprint("triggers", __name__)
